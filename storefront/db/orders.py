"""Orders the shop has taken: one row per paid pending checkout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, RowMapping

from storefront.db.engine import Repository
from storefront.db.schema import orders
from storefront.states import OrderSource, OrderState

__all__ = ["Order", "Orders"]


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
