"""Staff refunds, one row per form submit (`request_id`), and their effect on the order's totals.

Every change of a refund's state and the order's reserved/refunded totals happen in one
transaction, each guarded by the refund's current state, so no amount is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, RowMapping

from storefront.db.engine import Repository
from storefront.db.orders import Orders
from storefront.db.schema import refunds
from storefront.states import RefundState

__all__ = ["RefundRow", "RefundRows", "Reservation"]


@dataclass(frozen=True)
class RefundRow:
    request_id: str
    order_reference: str
    amount: Decimal
    currency: str
    state: RefundState
    refund_id: str | None  # Amazon's, once Create Refund answered
    reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Reservation:
    """`row`: this request's refund (new or from an earlier try); None when refused."""

    row: RefundRow | None

    @property
    def granted(self) -> bool:
        return self.row is not None


def _row(row: RowMapping) -> RefundRow:
    values = {c.name: row[c.name] for c in refunds.columns}
    values["amount"] = Decimal(str(values["amount"]))
    return RefundRow(**values)


class RefundRows(Repository):
    """Reads and writes of `refunds`, and the order totals they move."""

    def __init__(self, engine: Any, orders: Orders) -> None:
        super().__init__(engine)
        self._orders = orders
        self._insert_refund = (
            self._insert(refunds)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(*refunds.columns)
        )

    def get(self, request_id: str) -> RefundRow | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(refunds).where(refunds.c.request_id == request_id))
                .mappings()
                .first()
            )
        return None if row is None else _row(row)

    def for_order(self, reference: str) -> list[RefundRow]:
        r = refunds.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(refunds)
                .where(r.order_reference == reference)
                .order_by(r.created_at, r.request_id)
            ).mappings()
            return [_row(row) for row in rows]

    def unsettled(self, *, limit: int, refund_ids: list[str] | None = None) -> list[RefundRow]:
        """Refunds Amazon accepted and has not settled yet (RefundInitiated), oldest first."""
        r = refunds.c
        query = (
            select(refunds)
            .where(r.state == RefundState.PENDING)
            .where(r.refund_id.is_not(None))
            .order_by(r.updated_at, r.request_id)
            .limit(limit)
        )
        if refund_ids is not None:
            query = query.where(r.refund_id.in_(sorted(refund_ids)))
        with self.engine.connect() as conn:
            return [_row(row) for row in conn.execute(query).mappings()]

    def reserve(
        self, request_id: str, reference: str, amount: Decimal, currency: str, *, now: datetime
    ) -> Reservation:
        """Record the refund and set its amount aside on the order, atomically, before Amazon
        is called; a request seen before gets its row back and reserves nothing more.

        Refused (None) when the order has less than `amount` left to refund, counting refunds
        still pending: the row insert is rolled back with it.
        """
        with self.engine.connect() as conn, conn.begin() as transaction:
            inserted = (
                conn.execute(
                    self._insert_refund,
                    {
                        "request_id": request_id,
                        "order_reference": reference,
                        "amount": amount,
                        "currency": currency,
                        "state": RefundState.PENDING,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                .mappings()
                .first()
            )
            if inserted is None:
                transaction.rollback()
                return Reservation(self.get(request_id))
            if not self._orders.reserve_refund(conn, reference, amount):
                transaction.rollback()
                return Reservation(None)
            return Reservation(_row(inserted))

    def accepted(self, conn: Connection, request_id: str, refund_id: str, now: datetime) -> None:
        """Amazon accepted it (RefundInitiated): remember its id to follow it."""
        conn.execute(
            update(refunds)
            .where(refunds.c.request_id == request_id)
            .values(refund_id=refund_id, updated_at=now)
        )

    def settle(
        self,
        request_id: str,
        state: RefundState,
        *,
        reason: str | None,
        now: datetime,
        conn: Connection | None = None,
    ) -> bool:
        """Move a pending refund to Refunded or Declined and the order's totals with it, once.

        False when it was not pending any more (settled by an IPN, a refresh or reconcile).
        """
        if state is RefundState.PENDING:
            raise ValueError("settling needs a final state")
        if conn is None:
            with self._tx() as own:
                return self._settle(own, request_id, state, reason, now)
        return self._settle(conn, request_id, state, reason, now)

    def _settle(
        self,
        conn: Connection,
        request_id: str,
        state: RefundState,
        reason: str | None,
        now: datetime,
    ) -> bool:
        r = refunds.c
        row = (
            conn.execute(
                update(refunds)
                .where(r.request_id == request_id)
                .where(r.state == RefundState.PENDING)
                .values(state=state, reason=reason, updated_at=now)
                .returning(r.order_reference, r.amount)
            )
            .mappings()
            .first()
        )
        if row is None:
            return False
        amount = Decimal(str(row["amount"]))
        if state is RefundState.REFUNDED:
            self._orders.settle_refund(conn, row["order_reference"], amount)
        else:
            self._orders.release_refund(conn, row["order_reference"], amount)
        return True
