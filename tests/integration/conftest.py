"""Fixtures for driving the app against the real simulator over HTTP.

Reusable pieces:

* `key_pair` - a fresh RSA key pair on disk (`tests.support.servers.KeyPair`).
* `simulator` - a `SimulatorHarness`: a real `Simulator` served on an ephemeral port, trusting
  `key_pair`, with helpers for its control API (`requests_log()`, `fault(...)`).
* `database_url` - parametrized `[sqlite]` / `[postgres]`: a clean database for this test, a
  SQLite file in tmp_path, or the module's PostgreSQL database with every table emptied.
  Every test that builds an app therefore runs on both backends.
* `app_factory` - `make(database_url=None, **overrides) -> Flask`: `create_app` in credentials
  mode pointed at `simulator`, on the test's `database_url` unless another URL is given.
  Every app variable not given is blanked, so a developer's environment never leaks in.
* `app`, `client` - one app from `app_factory` and its Flask test client.
* `buyer` - a `Buyer` that plays a person with a browser: adds to cart, presses the Amazon Pay
  button (POSTs the signed button config to the simulator), picks a payment method on the hosted
  page and follows the redirect back to the app's return URL.
* `live_app` - `serve(app) -> base_url`: the app on a real werkzeug server in a thread.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from amazonpay.simulator import Simulator, serve_in_thread
from app import create_app
from tests.support.servers import APP_VARIABLES, KeyPair, generate_key_pair

BUTTON_CONFIG = re.compile(
    r'<script type="application/json" id="amazon-pay-button-config">(.*?)</script>', re.S
)
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')

WALLET_FAILED = (
    "Your request to save Amazon Pay as a payment method was not successful. Please try again."
)
PAYMENT_FAILED = "Your Amazon Pay payment was not successful. Please try again."


@dataclass
class SimulatorHarness:
    """A running simulator and its control API."""

    simulator: Simulator | None  # None when reusing one started elsewhere
    base_url: str
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def checkout_js_url(self) -> str:
        return f"{self.base_url}/checkout.js"

    def requests_log(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base_url}/_simulator/requests", timeout=5)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def operations(self, operation: str) -> list[dict[str, Any]]:
        return [e for e in self.requests_log() if e.get("operation") == operation]

    def fault(self, operation: str, **options: Any) -> None:
        response = self.http.post(
            f"{self.base_url}/_simulator/faults",
            json={"operation": operation, **options},
            timeout=5,
        )
        assert response.status_code == 201, response.text

    def advance_clock(self, seconds: float) -> None:
        response = self.http.post(
            f"{self.base_url}/_simulator/clock", json={"advance_seconds": seconds}, timeout=5
        )
        response.raise_for_status()


@pytest.fixture(scope="session")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("amazonpay-keys"))


@pytest.fixture
def simulator(key_pair: KeyPair) -> Iterator[SimulatorHarness]:
    sim = Simulator(public_keys={key_pair.key_id: key_pair.public_key_path.read_bytes()})
    handle = serve_in_thread(sim, "127.0.0.1", 0)
    harness = SimulatorHarness(sim, handle.base_url)
    yield harness
    harness.http.close()
    handle.shutdown()


DATABASES = ["sqlite", "postgres"]


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def truncate_all_tables(conn: psycopg.Connection[Any]) -> None:
    """Empty every table in the public schema (one statement, ~10 ms); sequences restart."""
    # Every table but Alembic's version row: the schema stays at its revision.
    rows = conn.execute(
        "SELECT tablename FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    ).fetchall()
    if rows:
        names = ", ".join(f'"{name}"' for (name,) in rows)
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
def postgres_database(postgres_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """This module's PostgreSQL database and a connection kept open to empty it between tests."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # A connection left holding a lock would hang TRUNCATE: fail loudly instead.
        conn.execute("SET lock_timeout = '5s'")
        yield postgres_url, conn


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean database for one test, on each backend the shop supports.

    SQLite: a new file in tmp_path. PostgreSQL: the module's database (fresh per module, see
    `postgres_url`), every table emptied before the test - cheaper than a database per test.
    PostgreSQL is requested lazily, so `-k sqlite` runs never start a server; when it is asked
    for and cannot start, `postgres_server` fails the test (never skips it).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    url, conn = request.getfixturevalue("postgres_database")
    truncate_all_tables(conn)
    return str(url)


AppFactory = Callable[..., Flask]


@pytest.fixture
def app_factory(
    key_pair: KeyPair, simulator: SimulatorHarness, tmp_path: Path, database_url: str
) -> Iterator[AppFactory]:
    apps: list[Flask] = []
    default_database_url = database_url

    def make(database_url: str | None = None, **overrides: Any) -> Flask:
        config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
        config.update(
            {
                "AMAZON_PAY_PUBLIC_KEY_ID": key_pair.key_id,
                "AMAZON_PAY_PRIVATE_KEY": str(key_pair.private_key_path),
                "AMAZON_PAY_ENDPOINT": simulator.base_url,
                "AMAZON_PAY_CHECKOUT_JS_URL": simulator.checkout_js_url,
                "DATABASE_URL": database_url or default_database_url,
                "SECRET_KEY": "integration-test-secret-key-0123456789",
                "PUBLIC_URL": "http://localhost",
                "INSTANCE_PATH": str(tmp_path / "instance"),
                "TESTING": True,
                "CHECKOUT_CLAIM_WAIT_SECONDS": 5.0,
            }
        )
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["shop"].close()


@pytest.fixture
def app(app_factory: AppFactory) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def button_config(response: TestResponse) -> dict[str, Any]:
    """The object the page passes to amazon.Pay.renderButton (JSON-in-script, unescaped)."""
    match = BUTTON_CONFIG.search(response.get_data(as_text=True))
    assert match is not None, "no amazon-pay-button-config on the page"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def csrf_token(response: TestResponse) -> str:
    match = CSRF_INPUT.search(response.get_data(as_text=True))
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


@dataclass
class Checkout:
    """One trip through Amazon's hosted page: where the buyer came back, and what they saw."""

    checkout_session_id: str
    return_url: str  # path and query on our app, as Amazon redirected
    response: TestResponse  # the app's answer to the return URL
    config: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(
            self.config["createCheckoutSessionConfig"]["payloadJSON"]
        )
        return payload


class Buyer:
    """A person with a browser: the app through its test client, Amazon through HTTP."""

    def __init__(self, client: FlaskClient, simulator: SimulatorHarness) -> None:
        self.client = client
        self.simulator = simulator
        self.http = requests.Session()

    def add_to_cart(self, product_id: str = "mug") -> TestResponse:
        page = self.client.get("/")
        return self.client.post(
            "/cart/add", data={"product_id": product_id, "csrf_token": csrf_token(page)}
        )

    def press_button(self, page_path: str) -> tuple[str, dict[str, Any]]:
        """Render the page, submit its button config as checkout.js does.

        Returns the new checkout session id and the button config.
        """
        page = self.client.get(page_path)
        assert page.status_code == 200
        config = button_config(page)
        session_config = config["createCheckoutSessionConfig"]
        started = self.http.post(
            f"{self.simulator.base_url}/checkout/start",
            data={
                "payloadJSON": session_config["payloadJSON"],
                "signature": session_config["signature"],
                "publicKeyId": session_config["publicKeyId"],
                "algorithm": session_config["algorithm"],
                "merchantId": config["merchantId"],
                "sandbox": "true" if config["sandbox"] else "false",
                "productType": config["productType"],
                "checkoutLanguage": config["checkoutLanguage"],
            },
            allow_redirects=False,
            timeout=10,
        )
        assert started.status_code == 303, started.text
        session_id = started.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        return session_id, config

    def choose(self, session_id: str, method: str) -> str:
        """Pick a payment method on the hosted page; -> the return URL Amazon redirects to."""
        chosen = self.http.post(
            f"{self.simulator.base_url}/hosted/{session_id}/choose",
            data={"method": method},
            allow_redirects=False,
            timeout=10,
        )
        assert chosen.status_code == 303, chosen.text
        location = chosen.headers["Location"]
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}"

    def pay(self, page_path: str = "/wallet", method: str = "1111") -> Checkout:
        """The whole trip: button, hosted page, and back to the shop's return URL."""
        session_id, config = self.press_button(page_path)
        return_url = self.choose(session_id, method)
        return Checkout(session_id, return_url, self.client.get(return_url), config)

    def follow(self, response: TestResponse) -> TestResponse:
        assert response.status_code in (302, 303), response.status_code
        return self.client.get(response.headers["Location"])


@pytest.fixture
def buyer(client: FlaskClient, simulator: SimulatorHarness) -> Iterator[Buyer]:
    person = Buyer(client, simulator)
    yield person
    person.http.close()


@pytest.fixture
def live_app() -> Iterator[Callable[[Flask], str]]:
    servers: list[Any] = []

    def serve(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        # localhost, the PUBLIC_URL host of the apps these tests build.
        return f"http://localhost:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
