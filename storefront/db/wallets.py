"""Saved wallets: the charge permissions (`PaymentMethodOnFile`) a buyer saved with Amazon Pay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, RowMapping

from storefront.db.engine import Repository
from storefront.db.schema import saved_payment_methods
from storefront.states import WalletState

__all__ = ["SavedPaymentMethod", "SavedWallets"]


@dataclass(frozen=True)
class SavedPaymentMethod:
    buyer_id: str
    charge_permission_id: str
    checkout_session_id: str
    reference: str
    created_at: datetime
    state: WalletState
    reason_code: str | None
    payment_descriptor: str | None  # "Visa ****1111", as Amazon describes it
    expires_at: datetime | None
    state_checked_at: datetime | None  # when Amazon last told us the state


def _method(r: RowMapping) -> SavedPaymentMethod:
    return SavedPaymentMethod(
        buyer_id=r["buyer_id"],
        charge_permission_id=r["charge_permission_id"],
        checkout_session_id=r["checkout_session_id"],
        reference=r["reference"],
        created_at=r["created_at"],
        state=r["state"],
        reason_code=r["reason_code"],
        payment_descriptor=r["payment_descriptor"],
        expires_at=r["expires_at"],
        state_checked_at=r["state_checked_at"],
    )


class SavedWallets(Repository):
    """Reads and writes of `saved_payment_methods`."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._insert_method = self._insert(saved_payment_methods).on_conflict_do_nothing(
            index_elements=["charge_permission_id"]
        )
        # Built once: constructing and cache-keying a statement costs more than running it.
        spm = saved_payment_methods.c
        by_id = spm.charge_permission_id == bindparam("p_cpid")
        self._select_method = select(saved_payment_methods).where(by_id)
        self._mark_stale = update(saved_payment_methods).where(by_id).values(state_checked_at=None)
        # The common `record_state`: a state from a charge, no descriptor or expiry to keep.
        self._record_open_state = (
            update(saved_payment_methods)
            .where(by_id)
            .where(spm.state != WalletState.CLOSED)
            .values(
                state=bindparam("p_state"),
                reason_code=bindparam("p_reason"),
                state_checked_at=bindparam("p_checked"),
            )
        )

    def for_buyer(self, buyer_id: str, *, newest_first: bool = False) -> list[SavedPaymentMethod]:
        """The buyer's saved wallets, oldest first (newest first with `newest_first`)."""
        spm = saved_payment_methods.c
        order = spm.id.desc() if newest_first else spm.id
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(saved_payment_methods).where(spm.buyer_id == buyer_id).order_by(order)
            ).mappings()
            return [_method(r) for r in rows]

    def get(self, charge_permission_id: str) -> SavedPaymentMethod | None:
        with self.engine.connect() as conn:
            return self.read(conn, charge_permission_id)

    def read(self, conn: Connection, charge_permission_id: str) -> SavedPaymentMethod | None:
        """`get` on the caller's connection (one checkout for several reads)."""
        row = conn.execute(self._select_method, {"p_cpid": charge_permission_id}).mappings()
        found = row.first()
        return None if found is None else _method(found)

    def record_state(
        self,
        conn: Connection,
        charge_permission_id: str,
        *,
        state: WalletState,
        checked_at: datetime | None,
        reason_code: str | None = None,
        payment_descriptor: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        """What Amazon last told us about this wallet, inside the caller's transaction.

        A Closed wallet stays closed (Amazon never reopens one, docs/amazon-pay-api.md 6); a
        descriptor or expiry Amazon left out keeps the one we knew. `checked_at` None marks the
        state stale, so the next page that needs it asks Amazon again.
        """
        if not payment_descriptor and expires_at is None and state != WalletState.CLOSED:
            params = {
                "p_cpid": charge_permission_id,
                "p_state": state,
                "p_reason": reason_code,
                "p_checked": checked_at,
            }
            conn.execute(self._record_open_state, params)
            return
        spm = saved_payment_methods.c
        values: dict[str, Any] = {
            "state": state,
            "reason_code": reason_code,
            "state_checked_at": checked_at,
        }
        if payment_descriptor:
            values["payment_descriptor"] = payment_descriptor
        if expires_at is not None:
            values["expires_at"] = expires_at
        statement = update(saved_payment_methods).where(
            spm.charge_permission_id == charge_permission_id
        )
        if state != WalletState.CLOSED:
            statement = statement.where(spm.state != WalletState.CLOSED)
        conn.execute(statement.values(**values))

    def update_state(
        self,
        charge_permission_id: str,
        *,
        state: WalletState,
        checked_at: datetime | None,
        reason_code: str | None = None,
        payment_descriptor: str | None = None,
        expires_at: datetime | None = None,
        then_read: str | None = None,
    ) -> SavedPaymentMethod | None:
        """`record_state` in a transaction of its own; with `then_read`, that wallet as it is
        after the change, read in the same transaction (None without)."""
        with self._tx() as conn:
            self.record_state(
                conn,
                charge_permission_id,
                state=state,
                checked_at=checked_at,
                reason_code=reason_code,
                payment_descriptor=payment_descriptor,
                expires_at=expires_at,
            )
            return None if then_read is None else self.read(conn, then_read)

    def mark_stale(self, conn: Connection, charge_permission_id: str) -> None:
        """Forget when the state was confirmed: the next page or charge asks Amazon first."""
        conn.execute(self._mark_stale, {"p_cpid": charge_permission_id})

    def add(
        self,
        conn: Connection,
        *,
        buyer_id: str,
        charge_permission_id: str,
        checkout_session_id: str,
        reference: str,
        now: datetime,
    ) -> None:
        """Record a saved wallet inside the caller's transaction; a second add does nothing."""
        conn.execute(
            self._insert_method,
            {
                "buyer_id": buyer_id,
                "charge_permission_id": charge_permission_id,
                "checkout_session_id": checkout_session_id,
                "reference": reference,
                "created_at": now,
                "state": WalletState.CHARGEABLE,
                "state_checked_at": now,  # Complete just succeeded: Amazon saved it
            },
        )
