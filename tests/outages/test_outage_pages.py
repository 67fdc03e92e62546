"""The shop answers without its database: a 503 page that refreshes itself, never a 500, and on
the return URL the sentence that the payment is safe (in-process, against a real PostgreSQL)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from storefront.db import DatabaseTimeouts
from storefront.outages import register_outage_pages
from tests.outages.conftest import OutagePostgres
from tests.support.servers import APP_VARIABLES, KeyPair

pytestmark = pytest.mark.postgres

REF = "walletRefAAAAAAAAAAAAA"
SESSION_ID = "3f0c8f0e-9d8f-4b8e-a1c2-6d5e4f3a2b1c"
RETURN_PATH = f"/checkout/return?ref={REF}&amazonCheckoutSessionId={SESSION_ID}"
SAFE = "Your payment is safe and will be confirmed"
FAILED = "was not successful"


def app_config(keys: KeyPair, database_url: str, tmp_path: Path) -> dict[str, Any]:
    config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
    config.update(
        {
            "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
            "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
            "AMAZON_PAY_ENDPOINT": "http://127.0.0.1:9",  # never reached: no pending checkout
            "SECRET_KEY": "outage-test-secret-key-0123456789abcdef",
            "PUBLIC_URL": "http://localhost",
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "TESTING": True,
            "SCHEMA_RECHECK_SECONDS": 0.0,
        }
    )
    return config


@pytest.fixture
def build_app(merchant_keys: KeyPair, tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def build(database_url: str) -> Flask:
        app = create_app(app_config(merchant_keys, database_url, tmp_path))
        register_outage_pages(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["shop"].close()


def test_pages_that_need_the_database_answer_503_while_it_is_down(
    build_app: Any,
    fresh_database: str,
    outage_postgres: OutagePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(fresh_database)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # the schema gate is open

    with outage_postgres.stopped(), caplog.at_level(logging.WARNING):
        wallet = client.get("/wallet")
        back = client.get(RETURN_PATH)
        home = client.get("/")
        health = client.get("/healthz")

    for response in (wallet, back):
        page = response.get_data(as_text=True)
        assert response.status_code == 503, page
        assert response.headers["Retry-After"] == "5"
        assert 'data-testid="unavailable"' in page
        assert '<meta http-equiv="refresh" content="5">' in page
        assert FAILED not in page
    assert SAFE in back.get_data(as_text=True)
    assert SAFE not in wallet.get_data(as_text=True)
    assert home.status_code == 200  # the catalog needs no database
    assert health.status_code == 503
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "database unavailable on checkout.checkout_return: OperationalError" in logged
    assert SESSION_ID not in logged
    assert REF not in logged

    assert client.get("/wallet").status_code == 200  # back: the same app serves again


def test_a_frozen_database_at_start_up_delays_neither_start_up_nor_health_checks(
    build_app: Any, fresh_database: str, outage_postgres: OutagePostgres
) -> None:
    with outage_postgres.frozen():
        started = time.monotonic()
        app = build_app(fresh_database)
        start_up = time.monotonic() - started
        client = app.test_client()
        answers = []
        for _ in range(3):
            asked = time.monotonic()
            answers.append((client.get("/healthz").status_code, time.monotonic() - asked))
            back = client.get(RETURN_PATH)
            assert back.status_code == 503
            assert SAFE in back.get_data(as_text=True)

    # The first schema check gives up with the connect timeout; later ones run in the
    # background and a request waits for them one second at most.
    assert start_up < DatabaseTimeouts().connect + 1.5, start_up
    assert all(status == 503 and seconds < 2.0 for status, seconds in answers), answers
    deadline = time.monotonic() + 15
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the gate never opened after the database thawed"
        time.sleep(0.2)
    assert client.get("/wallet").status_code == 200


def test_registering_twice_changes_nothing(build_app: Any, fresh_database: str) -> None:
    app = build_app(fresh_database)
    handlers = dict(app.error_handler_spec[None][None])
    register_outage_pages(app)
    assert dict(app.error_handler_spec[None][None]) == handlers
