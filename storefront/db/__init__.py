"""Persistence with SQLAlchemy Core: one repository per table group, behind one `Store`.

`Store(engine)` gives `checkouts` (pending checkouts), `ledger` (the claim ledger that makes
each Amazon operation run once), `orders` and `wallets`. SQLite by default, PostgreSQL via
psycopg 3, every wait bounded (`DatabaseTimeouts`); the schema is built and changed only by the
Alembic revisions in `migrations/`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from storefront.db.checkouts import PendingCheckout, PendingCheckouts, new_reference
from storefront.db.engine import DatabaseTimeouts, create_store_engine, ping
from storefront.db.health import HealthProbe
from storefront.db.ledger import Claim, ClaimAttempt, ClaimLedger
from storefront.db.migrations import SchemaStatus, schema_status, upgrade
from storefront.db.orders import Order, Orders
from storefront.db.wallets import SavedPaymentMethod, SavedWallets

__all__ = [
    "Claim",
    "ClaimAttempt",
    "DatabaseTimeouts",
    "Order",
    "PendingCheckout",
    "SavedPaymentMethod",
    "Store",
    "create_store_engine",
    "new_reference",
]


class Store:
    """The shop's repositories over one engine. Use cases receive it as an argument."""

    def __init__(self, engine: Engine, *, ping_budget_seconds: float = 1.5) -> None:
        self.engine = engine
        self.checkouts = PendingCheckouts(engine)
        self.orders = Orders(engine)
        self.wallets = SavedWallets(engine)
        self.ledger = ClaimLedger(
            engine, checkouts=self.checkouts, orders=self.orders, wallets=self.wallets
        )
        self._health = HealthProbe(lambda: ping(engine), budget_seconds=ping_budget_seconds)

    def ping(self) -> bool:
        """Whether the database answers, known within `ping_budget_seconds` (for /healthz)."""
        return self._health.check()

    def schema_status(self) -> SchemaStatus:
        return schema_status(self.engine)

    def upgrade(self, *, only_if_empty: bool = False) -> SchemaStatus:
        return upgrade(self.engine, only_if_empty=only_if_empty)
