"""The shop's tables as SQLAlchemy Core metadata: what the newest migration builds.

Alembic revisions under `migrations/` are the only way the schema changes; this module is the
picture the code reads and writes, and `tests/unit/test_migrations.py` checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
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

from storefront.states import (
    CheckoutKind,
    ClaimState,
    OperationKind,
    OrderSource,
    OrderState,
    PendingState,
    RefundState,
    WalletState,
)

__all__ = [
    "StateColumn",
    "UTCDateTime",
    "checkout_claims",
    "metadata",
    "operations",
    "orders",
    "pending_checkouts",
    "refunds",
    "saved_payment_methods",
    "staff_audit",
    "throttles",
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

operations = Table(
    "operations",
    metadata,
    # Our own key of one Amazon operation: a checkout session id for Complete Checkout Session,
    # `charge:<ref>:<try>`, `refund:<request id>`, ... for the others (storefront/ledger keys).
    Column("operation_key", String(96), primary_key=True),
    Column("kind", StateColumn(OperationKind, 32), nullable=False),
    Column("reference", String(40), nullable=False, index=True),  # the order or pending checkout
    Column("status", StateColumn(ClaimState), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("reason", String(64), nullable=True),
    Column("idempotency_key", String(32), nullable=True),
    Column("request", Text, nullable=True),  # the exact call, JSON: a replay sends the same
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("result_id", String(64), nullable=True),  # the refund's id, for a refund
    Column("next_attempt_at", UTCDateTime, nullable=True),  # reconciliation backs off per claim
    # Amazon confirmed the operation belongs to `reference` (for Complete: the session's
    # merchantReferenceId). An unconfirmed claim never keeps the true owner out.
    Column("owner_confirmed", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The reconciler's scan: undecided claims (claimed/pending) whose lease has run out.
    Index("ix_operations_status_lease", "status", "lease_expires_at"),
)
# The name the return's code has always used for the same table.
checkout_claims = operations

orders = Table(
    "orders",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False),
    Column("status", StateColumn(OrderState), nullable=False),
    Column("checkout_session_id", String(64), nullable=True),  # None when paid by saved wallet
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("source", StateColumn(OrderSource), nullable=False, default=OrderSource.CHECKOUT),
    Column("captured_amount", Numeric(12, 2), nullable=False, default=0),
    Column("refunded_amount", Numeric(12, 2), nullable=False, default=0),  # Amazon said Refunded
    # Refunds asked for and not declined yet: what is refundable counts them, so two staff can
    # never refund the same remainder (reserved atomically with the refund's row).
    Column("refund_reserved_amount", Numeric(12, 2), nullable=False, default=0),
    Column("authorization_expires_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=True),
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
    Column("state", StateColumn(WalletState), nullable=False, default=WalletState.CHARGEABLE),
    Column("reason_code", String(64), nullable=True),
    Column("payment_descriptor", String(128), nullable=True),  # "Visa ****1111"
    Column("expires_at", UTCDateTime, nullable=True),
    Column("state_checked_at", UTCDateTime, nullable=True),  # when Amazon last told us the state
)

refunds = Table(
    "refunds",
    metadata,
    Column("request_id", String(64), primary_key=True),  # the staff form's request_id
    Column("order_reference", String(40), nullable=False, index=True),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", StateColumn(RefundState), nullable=False),
    Column("refund_id", String(64), nullable=True, unique=True),
    Column("reason", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

staff_audit = Table(
    "staff_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("order_reference", String(40), nullable=True, index=True),
    Column("request_id", String(64), nullable=True),
    Column("outcome", String(64), nullable=False),
)

# Counters shared by every instance: failed staff sign-ins, costly anonymous requests.
throttles = Table(
    "throttles",
    metadata,
    Column("throttle_key", String(128), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_started_at", UTCDateTime, nullable=False),
    Column("blocked_until", UTCDateTime, nullable=True),
)
