"""Schema migrations on SQLite and a real PostgreSQL: new databases, release-0.1.0 databases
(no version table) upgraded in place with every row kept, and the app refusing an old schema.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import Result

from app import create_app
from storefront.db import Store, create_store_engine
from storefront.db.migrations import SchemaState, head_revision
from storefront.db.schema import metadata
from storefront.states import (
    CheckoutKind,
    ClaimState,
    OperationKind,
    OrderSource,
    OrderState,
    PendingState,
    WalletState,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
APP_VARIABLES = (
    "AMAZON_PAY_PUBLIC_KEY_ID",
    "AMAZON_PAY_PRIVATE_KEY",
    "DATABASE_URL",
    "SECRET_KEY",
    "PUBLIC_URL",
)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL database for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database(f"migrations_{request.node.name}")
    yield url
    server.drop_database(url)


def _engine_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def load_legacy_database(url: str) -> None:
    """Build the database exactly as release 0.1.0 did, with the rows of a live shop."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    script = (FIXTURES / f"legacy_schema_{dialect}.sql").read_text("utf-8")
    statements = [
        "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        for chunk in script.split(";\n")
    ]
    engine = sqlalchemy.create_engine(_engine_url(url))
    with engine.begin() as conn:
        for statement in filter(None, statements):
            conn.exec_driver_sql(statement)
    engine.dispose()


# Release 0.1.0's columns of each table, and where they live now.
_LEGACY_COLUMNS = {
    "pending_checkouts": "reference, buyer_id, kind, amount, currency, items, state,"
    " checkout_session_id, created_at",
    "checkout_claims": "checkout_session_id, reference, status, lease_owner, lease_expires_at,"
    " attempts, reason, charge_permission_id, charge_id, created_at, updated_at",
    "orders": "reference, buyer_id, amount, currency, items, status, checkout_session_id,"
    " charge_permission_id, charge_id, created_at",
    "saved_payment_methods": "id, buyer_id, charge_permission_id, checkout_session_id,"
    " reference, created_at",
}
_RENAMED = {"checkout_claims": ("operations", {"checkout_session_id": "operation_key"})}


def rows(store: Store, *, upgraded: bool) -> dict[str, list[tuple[str, ...]]]:
    """Every row of release 0.1.0's tables, read by its old columns (wherever they are now)."""
    found = {}
    with store.engine.connect() as conn:
        for table, columns in _LEGACY_COLUMNS.items():
            name, renames = _RENAMED.get(table, (table, {})) if upgraded else (table, {})
            selected = ", ".join(renames.get(c, c) for c in columns.split(", "))
            query = sqlalchemy.text(f"SELECT {selected} FROM {name}")  # noqa: S608
            found[table] = sorted(tuple(str(v) for v in row) for row in conn.execute(query))
    return found


def test_a_new_database_is_built_by_the_migrations_as_the_code_describes_it(
    database_url: str,
) -> None:
    store = Store(create_store_engine(_engine_url(database_url)))
    assert store.schema_status().state is SchemaState.EMPTY

    assert store.upgrade().state is SchemaState.CURRENT

    inspector = sqlalchemy.inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes, table.name
    store.engine.dispose()


def test_a_release_0_1_0_database_is_upgraded_in_place_with_every_row_kept(
    database_url: str,
) -> None:
    load_legacy_database(database_url)
    store = Store(create_store_engine(_engine_url(database_url)))
    before = rows(store, upgraded=False)
    assert sum(map(len, before.values())) == 8
    status = store.schema_status()
    assert (status.state, status.current) == (SchemaState.LEGACY, None)
    assert "flask --app app db upgrade" in status.message()

    after = store.upgrade()

    assert (after.state, after.current) == (SchemaState.CURRENT, head_revision())
    assert rows(store, upgraded=True) == before
    # The rows read back through the repositories as the typed states they were written as.
    wallet = store.checkouts.get("walletRefAAAAAAAAAAAAA")
    assert wallet is not None
    assert (wallet.kind, wallet.state) == (CheckoutKind.WALLET_SETUP, PendingState.COMPLETED)
    order = store.orders.get("orderRefBBBBBBBBBBBBBB")
    assert order is not None
    assert (order.status, str(order.amount)) == (OrderState.PAID, "24.50")
    # Release 0.1.0 charged with AuthorizeWithCapture: a paid order was captured in full.
    assert (order.captured_amount, order.refundable) == (order.amount, order.amount)
    assert order.source == OrderSource.CHECKOUT
    claim = store.ledger.get("33333333-3333-4333-8333-333333333333")
    assert claim is not None
    assert (claim.status, claim.attempts) == (ClaimState.PENDING, 2)
    assert claim.owner_confirmed  # its Get had answered: it was about to complete
    [wallet_row] = store.wallets.for_buyer("buyerAAAAAAAAAAAAAAAAA")
    assert (wallet_row.charge_permission_id, wallet_row.state) == (
        "S01-1111111-1111111",
        WalletState.CHARGEABLE,
    )
    assert claim.kind == OperationKind.COMPLETE_CHECKOUT_SESSION
    # Upgrading again is a no-op.
    assert store.upgrade().state is SchemaState.CURRENT
    assert rows(store, upgraded=True) == before
    store.engine.dispose()


def test_the_older_index_is_added_to_a_release_0_1_0_database_that_lacks_it(
    database_url: str,
) -> None:
    load_legacy_database(database_url)
    store = Store(create_store_engine(_engine_url(database_url)))
    with store.engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP INDEX ix_checkout_claims_status_lease"))

    store.upgrade()

    names = {i["name"] for i in sqlalchemy.inspect(store.engine).get_indexes("operations")}
    assert "ix_operations_status_lease" in names
    store.engine.dispose()


def test_two_processes_upgrading_at_once_migrate_once(database_url: str) -> None:
    load_legacy_database(database_url)
    stores = [Store(create_store_engine(_engine_url(database_url))) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[SchemaState] = []

    def upgrade(store: Store) -> None:
        barrier.wait()
        results.append(store.upgrade().state)

    threads = [threading.Thread(target=upgrade, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [SchemaState.CURRENT] * len(stores)
    with stores[0].engine.connect() as conn:
        versions = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(head_revision(),)]
    for store in stores:
        store.engine.dispose()


def _credentials_config(tmp_path: Path, database_url: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
    config.update(
        {
            "AMAZON_PAY_PUBLIC_KEY_ID": "SANDBOX-MIGRATIONTEST",
            "AMAZON_PAY_PRIVATE_KEY": str(pem),
            "AMAZON_PAY_ENDPOINT": "http://127.0.0.1:9",
            "SECRET_KEY": "migration-test-secret-key-of-some-length",
            "PUBLIC_URL": "http://localhost",
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "TESTING": True,
            "SCHEMA_RECHECK_SECONDS": 0.0,
        }
    )
    return config


def test_the_app_refuses_an_old_schema_in_one_line_until_it_is_upgraded(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_legacy_database(database_url)
    with caplog.at_level(logging.ERROR, logger="storefront.db.migrations"):
        app = create_app(_credentials_config(tmp_path, database_url))
    lines = [
        r.getMessage() for r in caplog.records if "flask --app app db upgrade" in r.getMessage()
    ]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    client = app.test_client()

    health = client.get("/healthz")
    assert health.status_code == 503
    assert "flask --app app db upgrade" in health.get_json()["database"]
    page = client.get("/")
    assert page.status_code == 503
    assert b"briefly unavailable" in page.data
    back = client.get("/checkout/return?ref=walletRefAAAAAAAAAAAAA&amazonCheckoutSessionId=x")
    assert back.status_code == 503
    assert b"Your payment is safe and will be confirmed" in back.data
    assert b"not successful" not in back.data

    result: Result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"current (revision {head_revision()})" in result.output
    # The gate looks again (at most every two seconds) and opens without a restart.
    gate = app.extensions["shop"].schema
    gate._checked_at = float("-inf")
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200
    app.extensions["shop"].close()


def test_the_app_builds_a_new_databases_schema_itself(database_url: str, tmp_path: Path) -> None:
    app = create_app(_credentials_config(tmp_path, database_url))
    assert app.test_client().get("/healthz").status_code == 200
    current = app.test_cli_runner().invoke(args=["db", "current"])
    assert current.exit_code == 0, current.output
    app.extensions["shop"].close()


def test_a_database_that_is_down_at_start_up_does_not_stop_the_app(tmp_path: Path) -> None:
    # Nothing listens on port 9: the database "is down".
    url = "postgresql://postgres@127.0.0.1:9/shop"
    app = create_app(_credentials_config(tmp_path, url))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert "unavailable" in response.get_json()["database"]
    app.extensions["shop"].close()
