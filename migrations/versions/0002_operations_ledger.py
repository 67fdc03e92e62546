"""One ledger for every money-moving call; saved-wallet state; charges, refunds and staff.

- `checkout_claims` becomes `operations`, keyed by our own operation key (a checkout session
  id for Complete Checkout Session, as before), with the call's kind, idempotency key and
  request kept so any takeover or reconciliation replays the very same call.
- `orders` learn how they were paid, what was captured and refunded, and may have no checkout
  session (saved wallet, staff charge). Orders of release 0.1.0 were charged with
  AuthorizeWithCapture: their captured amount is their amount.
- `saved_payment_methods` keep the wallet's state at Amazon, its descriptor and expiry.
- New: `refunds`, `staff_audit`, and `throttles` (counters shared by every instance).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_checkout_claims_status_lease", table_name="checkout_claims")
    op.drop_index("ix_checkout_claims_reference", table_name="checkout_claims")
    with op.batch_alter_table("checkout_claims") as batch:
        batch.alter_column(
            "checkout_session_id",
            new_column_name="operation_key",
            existing_type=sa.String(64),
            type_=sa.String(96),
            existing_nullable=False,
        )
        batch.add_column(
            sa.Column(
                "kind",
                sa.String(32),
                nullable=False,
                server_default="complete_checkout_session",
            )
        )
        batch.add_column(sa.Column("idempotency_key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("request", sa.Text, nullable=True))
        batch.add_column(sa.Column("result_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime, nullable=True))
    op.rename_table("checkout_claims", "operations")
    op.create_index("ix_operations_reference", "operations", ["reference"])
    op.create_index("ix_operations_status_lease", "operations", ["status", "lease_expires_at"])

    with op.batch_alter_table("orders") as batch:
        batch.alter_column("checkout_session_id", existing_type=sa.String(64), nullable=True)
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default="checkout")
        )
        batch.add_column(
            sa.Column("captured_amount", sa.Numeric(12, 2), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("refunded_amount", sa.Numeric(12, 2), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column(
                "refund_reserved_amount", sa.Numeric(12, 2), nullable=False, server_default="0"
            )
        )
        batch.add_column(sa.Column("authorization_expires_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime, nullable=True))
    op.execute("UPDATE orders SET captured_amount = amount WHERE status = 'paid'")

    with op.batch_alter_table("saved_payment_methods") as batch:
        batch.add_column(
            sa.Column("state", sa.String(16), nullable=False, server_default="chargeable")
        )
        batch.add_column(sa.Column("reason_code", sa.String(64), nullable=True))
        batch.add_column(sa.Column("payment_descriptor", sa.String(128), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("state_checked_at", sa.DateTime, nullable=True))

    op.create_table(
        "refunds",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("order_reference", sa.String(40), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refund_id", sa.String(64), nullable=True, unique=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_refunds_order_reference", "refunds", ["order_reference"])
    op.create_table(
        "staff_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("order_reference", sa.String(40), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=False),
    )
    op.create_index("ix_staff_audit_order_reference", "staff_audit", ["order_reference"])
    op.create_table(
        "throttles",
        sa.Column("throttle_key", sa.String(128), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("window_started_at", sa.DateTime, nullable=False),
        sa.Column("blocked_until", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("throttles")
    op.drop_index("ix_staff_audit_order_reference", table_name="staff_audit")
    op.drop_table("staff_audit")
    op.drop_index("ix_refunds_order_reference", table_name="refunds")
    op.drop_table("refunds")
    with op.batch_alter_table("saved_payment_methods") as batch:
        for name in (
            "state_checked_at",
            "expires_at",
            "payment_descriptor",
            "reason_code",
            "state",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("orders") as batch:
        for name in (
            "updated_at",
            "authorization_expires_at",
            "refund_reserved_amount",
            "refunded_amount",
            "captured_amount",
            "source",
        ):
            batch.drop_column(name)
    op.drop_index("ix_operations_status_lease", table_name="operations")
    op.drop_index("ix_operations_reference", table_name="operations")
    op.rename_table("operations", "checkout_claims")
    with op.batch_alter_table("checkout_claims") as batch:
        for name in ("next_attempt_at", "result_id", "request", "idempotency_key", "kind"):
            batch.drop_column(name)
        batch.alter_column(
            "operation_key",
            new_column_name="checkout_session_id",
            existing_type=sa.String(96),
            type_=sa.String(64),
        )
    op.create_index("ix_checkout_claims_reference", "checkout_claims", ["reference"])
    op.create_index(
        "ix_checkout_claims_status_lease", "checkout_claims", ["status", "lease_expires_at"]
    )
