"""Pending checkouts: what a rendered Amazon Pay button offers, under our own reference."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from storefront.db.engine import Repository
from storefront.db.schema import operations, pending_checkouts
from storefront.states import CheckoutKind, PendingState

__all__ = ["PendingCheckout", "PendingCheckouts", "new_reference"]


def new_reference() -> str:
    """An unguessable pending-checkout reference: 22 URL-safe characters (128 random bits)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class PendingCheckout:
    reference: str
    buyer_id: str
    kind: CheckoutKind
    amount: Decimal | None
    currency: str
    items: list[dict[str, Any]]
    state: PendingState
    checkout_session_id: str | None
    created_at: datetime


def pending_from_row(row: RowMapping) -> PendingCheckout:
    amount = row["amount"]
    return PendingCheckout(
        reference=row["reference"],
        buyer_id=row["buyer_id"],
        kind=row["kind"],
        amount=None if amount is None else Decimal(str(amount)),
        currency=row["currency"],
        items=json.loads(row["items"] or "[]"),
        state=row["state"],
        checkout_session_id=row["checkout_session_id"],
        created_at=row["created_at"],
    )


class PendingCheckouts(Repository):
    """Reads and writes of `pending_checkouts`."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        pc = pending_checkouts.c
        # Built once: SQLAlchemy then finds the compiled form in its cache by a memoised key.
        self._select = select(pending_checkouts).where(pc.reference == bindparam("p_ref"))
        self._bind = (
            update(pending_checkouts)
            .where(pc.reference == bindparam("p_ref"))
            .where((pc.state == PendingState.OPEN) | (pc.checkout_session_id == bindparam("p_sid")))
            .values(state=PendingState.PROCESSING, checkout_session_id=bindparam("p_sid"))
        )
        self._complete = (
            update(pending_checkouts)
            .where(pc.reference == bindparam("p_ref"))
            .values(state=PendingState.COMPLETED, checkout_session_id=bindparam("p_sid"))
        )

    def find_or_create(
        self,
        *,
        buyer_id: str,
        kind: CheckoutKind,
        amount: Decimal | None,
        currency: str,
        items: list[dict[str, Any]],
        now: datetime,
        reuse_window: timedelta,
    ) -> PendingCheckout:
        """Reuse the buyer's open, recent pending checkout of this kind and amount, or make one."""
        items_json = json.dumps(items, sort_keys=True, separators=(",", ":"))
        pc = pending_checkouts.c
        with self._tx() as conn:
            query = (
                select(pending_checkouts)
                .where(pc.buyer_id == buyer_id)
                .where(pc.kind == kind)
                .where(pc.currency == currency)
                .where(pc.state == PendingState.OPEN)
                .where(pc.created_at > now - reuse_window)
                .order_by(pc.created_at.desc())
            )
            for row in conn.execute(query).mappings():
                found = pending_from_row(row)
                if found.amount == amount and found.items == items:
                    return found
            reference = new_reference()
            conn.execute(
                insert(pending_checkouts).values(
                    reference=reference,
                    buyer_id=buyer_id,
                    kind=kind,
                    amount=amount,
                    currency=currency,
                    items=items_json,
                    state=PendingState.OPEN,
                    created_at=now,
                )
            )
        found_new = self.get(reference)
        assert found_new is not None
        return found_new

    def get(self, reference: str) -> PendingCheckout | None:
        with self.engine.connect() as conn:
            return self.read(conn, reference)

    def read(self, conn: Connection, reference: str) -> PendingCheckout | None:
        """`get` on the caller's connection (one checkout for several reads)."""
        row = conn.execute(self._select, {"p_ref": reference}).mappings().first()
        return None if row is None else pending_from_row(row)

    def start_processing(self, reference: str, checkout_session_id: str) -> bool:
        """Bind the pending checkout to this session id unless another session holds it."""
        with self._tx() as conn:
            return self.bind_session(conn, reference, checkout_session_id)

    def bind_session(self, conn: Connection, reference: str, checkout_session_id: str) -> bool:
        """`start_processing` inside the caller's transaction."""
        params = {"p_ref": reference, "p_sid": checkout_session_id}
        return conn.execute(self._bind, params).rowcount == 1

    def mark_completed(self, conn: Connection, reference: str, checkout_session_id: str) -> None:
        """Completed through this session, inside the caller's transaction."""
        conn.execute(self._complete, {"p_ref": reference, "p_sid": checkout_session_id})

    def reopen(
        self, conn: Connection, reference: str, checkout_session_id: str, *, only_processing: bool
    ) -> None:
        """Release the pending checkout from this session so the buyer can try again."""
        pc = pending_checkouts.c
        statement = (
            update(pending_checkouts)
            .where(pc.reference == reference)
            .where(pc.checkout_session_id == checkout_session_id)
            .values(state=PendingState.OPEN, checkout_session_id=None)
        )
        if only_processing:
            statement = statement.where(pc.state == PendingState.PROCESSING)
        else:
            statement = statement.where(pc.state != PendingState.COMPLETED)
        conn.execute(statement)

    def purge_unused(self, *, created_before: datetime) -> int:
        """Delete open pending checkouts made before `created_before` that no operation names.

        A page view makes one for its button; one nobody paid through within Amazon's 24 hours
        can no longer be paid (the session would be canceled), so it only takes space. One an
        operation names (a claim, a saved-wallet charge) is kept with its history.
        """
        pc = pending_checkouts.c
        named = exists().where(operations.c.reference == pc.reference)
        with self._tx() as conn:
            return conn.execute(
                delete(pending_checkouts)
                .where(pc.state == PendingState.OPEN)
                .where(pc.created_at < created_before)
                .where(~named)
            ).rowcount
