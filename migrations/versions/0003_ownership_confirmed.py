"""Remember whether Amazon confirmed which pending checkout a checkout session belongs to.

A claim made for a session id whose ownership Amazon has not confirmed yet (its Get Checkout
Session never answered) must not keep the session's true owner from completing it. Claims that
already read the session (every decided one, and pending ones whose Get answered) count as
confirmed; those still waiting on their first Get do not.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(
            sa.Column("owner_confirmed", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE operations SET owner_confirmed = TRUE"
        " WHERE status IN ('completed', 'failed')"
        " OR (reason IS NOT NULL AND reason NOT LIKE 'get-%')"
    )


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("owner_confirmed")
