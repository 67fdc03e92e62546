"""Saved wallets: the charge permissions (`PaymentMethodOnFile`) a buyer saved with Amazon Pay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

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


class SavedWallets(Repository):
    """Reads and writes of `saved_payment_methods`."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._insert_method = self._insert(saved_payment_methods).on_conflict_do_nothing(
            index_elements=["charge_permission_id"]
        )

    def for_buyer(self, buyer_id: str) -> list[SavedPaymentMethod]:
        """The buyer's saved wallets, oldest first."""
        spm = saved_payment_methods.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(saved_payment_methods).where(spm.buyer_id == buyer_id).order_by(spm.id)
            ).mappings()
            return [
                SavedPaymentMethod(
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
                for r in rows
            ]

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
