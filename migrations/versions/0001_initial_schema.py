"""The schema of release 0.1.0, the last one built by `create_all` at start-up.

A database that release created has these tables but no `alembic_version`: each table and
index is created only when missing, so upgrading such a database adds the version row (and the
one index older copies lack) and keeps every row.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    meta = sa.MetaData()
    return [
        sa.Table(
            "pending_checkouts",
            meta,
            sa.Column("reference", sa.String(40), primary_key=True),
            sa.Column("buyer_id", sa.String(64), nullable=False, index=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("amount", sa.Numeric(12, 2), nullable=True),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("items", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("checkout_session_id", sa.String(64), nullable=True),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ),
        sa.Table(
            "checkout_claims",
            meta,
            sa.Column("checkout_session_id", sa.String(64), primary_key=True),
            sa.Column("reference", sa.String(40), nullable=False, index=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("lease_owner", sa.String(64), nullable=True),
            sa.Column("lease_expires_at", sa.DateTime, nullable=True),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("reason", sa.String(64), nullable=True),
            sa.Column("charge_permission_id", sa.String(64), nullable=True),
            sa.Column("charge_id", sa.String(64), nullable=True),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
            sa.Index("ix_checkout_claims_status_lease", "status", "lease_expires_at"),
        ),
        sa.Table(
            "orders",
            meta,
            sa.Column("reference", sa.String(40), primary_key=True),
            sa.Column("buyer_id", sa.String(64), nullable=False, index=True),
            sa.Column("amount", sa.Numeric(12, 2), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("items", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("checkout_session_id", sa.String(64), nullable=False),
            sa.Column("charge_permission_id", sa.String(64), nullable=True),
            sa.Column("charge_id", sa.String(64), nullable=True),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ),
        sa.Table(
            "saved_payment_methods",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("buyer_id", sa.String(64), nullable=False, index=True),
            sa.Column("charge_permission_id", sa.String(64), nullable=False, unique=True),
            sa.Column("checkout_session_id", sa.String(64), nullable=False),
            sa.Column("reference", sa.String(40), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in _tables():
        if table.name not in existing:
            table.create(bind)
            continue
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(bind)


def downgrade() -> None:
    for table in reversed(_tables()):
        op.drop_table(table.name)
