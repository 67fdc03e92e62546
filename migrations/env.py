"""Alembic's entry point: run the revisions on the connection `storefront.db.migrations` gives.

Run through `flask --app app db upgrade` (or `alembic` is not needed at all): the app builds the
Alembic configuration itself, so there is no alembic.ini and no second place for the URL.
"""

from __future__ import annotations

from alembic import context

from storefront.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `flask --app app db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place: later revisions use batch mode there.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
