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
from storefront.states import OrderState

__all__ = ["Order", "Orders"]


@dataclass(frozen=True)
class Order:
    reference: str
    buyer_id: str
    amount: Decimal
    currency: str
    items: list[dict[str, Any]]
    status: OrderState
    checkout_session_id: str
    charge_permission_id: str | None
    charge_id: str | None
    created_at: datetime


def _order(row: RowMapping) -> Order:
    values = {c.name: row[c.name] for c in orders.columns}
    values["amount"] = Decimal(str(values["amount"]))
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
        checkout_session_id: str,
        charge_permission_id: str | None,
        charge_id: str | None,
        now: datetime,
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
            },
        )
