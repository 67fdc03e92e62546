"""The shop's tables as SQLAlchemy Core metadata: what the newest migration builds.

Alembic revisions under `migrations/` are the only way the schema changes; this module is the
picture the code reads and writes, and `tests/unit/test_migrations.py` checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from storefront.states import CheckoutKind, ClaimState, OrderState, PendingState

__all__ = [
    "StateColumn",
    "UTCDateTime",
    "checkout_claims",
    "metadata",
    "orders",
    "pending_checkouts",
    "saved_payment_methods",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the column, the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class StateColumn(TypeDecorator[StrEnum]):
    """A state enum stored as its value in a plain VARCHAR, read back as the enum member.

    A VARCHAR rather than a database enum type: adding a state is then a code change, not a
    migration that locks the table.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int = 16) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: StrEnum | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


metadata = MetaData()

pending_checkouts = Table(
    "pending_checkouts",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("kind", StateColumn(CheckoutKind), nullable=False),
    Column("amount", Numeric(12, 2), nullable=True),  # NULL for a wallet setup (Complete with {})
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False, default="[]"),  # JSON snapshot of the cart
    Column("state", StateColumn(PendingState), nullable=False, default=PendingState.OPEN),
    Column("checkout_session_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

checkout_claims = Table(
    "checkout_claims",
    metadata,
    Column("checkout_session_id", String(64), primary_key=True),
    Column("reference", String(40), nullable=False, index=True),
    Column("status", StateColumn(ClaimState), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("reason", String(64), nullable=True),
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The reconciler's scan: undecided claims (claimed/pending) whose lease has run out.
    Index("ix_checkout_claims_status_lease", "status", "lease_expires_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False),
    Column("status", StateColumn(OrderState), nullable=False),
    Column("checkout_session_id", String(64), nullable=False),
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

saved_payment_methods = Table(
    "saved_payment_methods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("charge_permission_id", String(64), nullable=False, unique=True),
    Column("checkout_session_id", String(64), nullable=False),
    Column("reference", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
