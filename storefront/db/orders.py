"""Orders the shop has taken: one row per paid pending checkout or staff charge, with its charge
state and the captured, refunded and reserved (refund asked, not settled) totals."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, RowMapping

from storefront.db.engine import Repository
from storefront.db.schema import orders, saved_payment_methods
from storefront.db.wallets import SavedPaymentMethod
from storefront.states import OrderSource, OrderState

__all__ = ["Order", "Orders", "WalletSetups"]


@dataclass(frozen=True)
class Order:
    reference: str
    buyer_id: str
    amount: Decimal
    currency: str
    items: list[dict[str, Any]]
    status: OrderState
    checkout_session_id: str | None  # None when paid with a saved wallet or by staff
    charge_permission_id: str | None
    charge_id: str | None
    created_at: datetime
    source: OrderSource
    captured_amount: Decimal
    refunded_amount: Decimal  # refunds Amazon reported Refunded
    refund_reserved_amount: Decimal  # refunds asked for, not yet Refunded or Declined
    authorization_expires_at: datetime | None
    updated_at: datetime | None

    @property
    def refundable(self) -> Decimal:
        """What staff may still refund: captured minus refunded and still-pending refunds."""
        return self.captured_amount - self.refunded_amount - self.refund_reserved_amount


def _order(row: RowMapping) -> Order:
    values = {c.name: row[c.name] for c in orders.columns}
    for name in ("amount", "captured_amount", "refunded_amount", "refund_reserved_amount"):
        values[name] = Decimal(str(values[name]))
    values["items"] = json.loads(values["items"])
    return Order(**values)


class Orders(Repository):
    """Reads and writes of `orders`."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._insert_order = self._insert(orders).on_conflict_do_nothing(
            index_elements=["reference"]
        )

    def get(self, reference: str) -> Order | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(orders).where(orders.c.reference == reference))
                .mappings()
                .first()
            )
        return None if row is None else _order(row)

    def add(
        self,
        conn: Connection,
        *,
        reference: str,
        buyer_id: str,
        amount: Decimal,
        currency: str,
        items: list[dict[str, Any]],
        status: OrderState,
        checkout_session_id: str | None,
        charge_permission_id: str | None,
        charge_id: str | None,
        now: datetime,
        source: OrderSource = OrderSource.CHECKOUT,
        captured_amount: Decimal | None = None,
        authorization_expires_at: datetime | None = None,
    ) -> None:
        """Record the order inside the caller's transaction; a second add of it does nothing."""
        conn.execute(
            self._insert_order,
            {
                "reference": reference,
                "buyer_id": buyer_id,
                "amount": amount,
                "currency": currency,
                "items": json.dumps(items, sort_keys=True),
                "status": status,
                "checkout_session_id": checkout_session_id,
                "charge_permission_id": charge_permission_id,
                "charge_id": charge_id,
                "created_at": now,
                "updated_at": now,
                "source": source,
                # A paid order was captured in full (AuthorizeWithCapture / captureNow).
                "captured_amount": (
                    captured_amount
                    if captured_amount is not None
                    else (amount if status == OrderState.PAID else Decimal(0))
                ),
                "refunded_amount": Decimal(0),
                "refund_reserved_amount": Decimal(0),
                "authorization_expires_at": authorization_expires_at,
            },
        )

    def recent(self, *, status: OrderState | None = None, limit: int = 200) -> list[Order]:
        """The newest orders first, only those in `status` when given."""
        o = orders.c
        query = select(orders).order_by(o.created_at.desc(), o.reference).limit(limit)
        if status is not None:
            query = query.where(o.status == status)
        with self.engine.connect() as conn:
            return [_order(row) for row in conn.execute(query).mappings()]

    def reserve_refund(self, conn: Connection, reference: str, amount: Decimal) -> bool:
        """Set `amount` aside for a refund if that much is still refundable; False otherwise.

        One conditional UPDATE: two requests racing for the same remainder cannot both pass,
        on any number of instances (PostgreSQL locks the row; SQLite has one writer).
        """
        o = orders.c
        changed = conn.execute(
            update(orders)
            .where(o.reference == reference)
            .where(o.captured_amount - o.refunded_amount - o.refund_reserved_amount >= amount)
            .values(refund_reserved_amount=o.refund_reserved_amount + amount)
        ).rowcount
        return changed == 1

    def release_refund(self, conn: Connection, reference: str, amount: Decimal) -> None:
        """A reserved refund was declined or refused: its amount is refundable again."""
        o = orders.c
        conn.execute(
            update(orders)
            .where(o.reference == reference)
            .values(refund_reserved_amount=o.refund_reserved_amount - amount)
        )

    def settle_refund(self, conn: Connection, reference: str, amount: Decimal) -> None:
        """A reserved refund was refunded: it moves from reserved to refunded."""
        o = orders.c
        conn.execute(
            update(orders)
            .where(o.reference == reference)
            .values(
                refund_reserved_amount=o.refund_reserved_amount - amount,
                refunded_amount=o.refunded_amount + amount,
            )
        )

    def move(
        self,
        reference: str,
        *,
        to: OrderState,
        now: datetime,
        only_from: Collection[OrderState] | None = None,
        captured_amount: Decimal | None = None,
        authorization_expires_at: datetime | None = None,
        conn: Connection | None = None,
    ) -> bool:
        """Put the order in state `to` (from one of `only_from`, when given); False when it was
        in another state, so only one of two racing staff actions moves it."""
        o = orders.c
        values: dict[str, Any] = {"status": to, "updated_at": now}
        if captured_amount is not None:
            values["captured_amount"] = captured_amount
        if authorization_expires_at is not None:
            values["authorization_expires_at"] = authorization_expires_at
        statement = update(orders).where(o.reference == reference).values(**values)
        if only_from is not None:
            statement = statement.where(o.status.in_(sorted(only_from)))
        if conn is not None:
            return conn.execute(statement).rowcount == 1
        with self._tx() as own:
            return own.execute(statement).rowcount == 1


class WalletSetups(Repository):
    """Saved-wallet setups for the merchant console, newest first (all buyers)."""

    def recent(self, *, limit: int = 200) -> list[SavedPaymentMethod]:
        spm = saved_payment_methods.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(saved_payment_methods)
                .order_by(spm.created_at.desc(), spm.id.desc())
                .limit(limit)
            ).mappings()
            return [
                SavedPaymentMethod(**{k: r[k] for k in SavedPaymentMethod.__dataclass_fields__})
                for r in rows
            ]

    def get(self, charge_permission_id: str) -> SavedPaymentMethod | None:
        spm = saved_payment_methods.c
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(saved_payment_methods).where(
                        spm.charge_permission_id == charge_permission_id
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return SavedPaymentMethod(**{k: row[k] for k in SavedPaymentMethod.__dataclass_fields__})
