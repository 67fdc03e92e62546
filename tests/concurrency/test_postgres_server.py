"""The PostgreSQL fixture gives each module a fresh, real database the app can run on."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from app import create_app
from tests.support.postgres import PostgresServer
from tests.support.servers import generate_key_pair

pytestmark = pytest.mark.postgres


def table_names(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def test_each_module_gets_its_own_empty_database(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_url.rsplit("/", 1)[1].startswith("tests_concurrency_test_postgres_server")
    assert table_names(postgres_url) == set()
    other = postgres_server.create_database("another")
    try:
        assert other != postgres_url
        assert table_names(other) == set()
    finally:
        postgres_server.drop_database(other)


def test_the_app_creates_its_schema_and_reports_healthy_on_postgres(
    postgres_url: str, tmp_path: Path
) -> None:
    keys = generate_key_pair(tmp_path / "keys")
    app = create_app(
        {
            "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
            "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
            "AMAZON_PAY_ENDPOINT": "http://127.0.0.1:9",  # never called here
            "AMAZON_PAY_CHECKOUT_JS_URL": "http://127.0.0.1:9/checkout.js",
            "DATABASE_URL": postgres_url,
            "SECRET_KEY": "test-secret-key-0123456789abcdefghij",
            "PUBLIC_URL": "http://localhost",
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert table_names(postgres_url) >= {"pending_checkouts", "operations", "alembic_version"}
