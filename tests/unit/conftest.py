"""Unit-test fixtures: RSA keys generated once per run, a fake Amazon Pay at the HTTP boundary, and
a clean store per test on SQLite and on a real PostgreSQL.

FakeAmazon sits on `responses` and verifies every request's signature by rebuilding the canonical
request from what was received, as Amazon and our simulator do (docs/amazon-pay-api.md 1.12).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay import signing
from amazonpay.client import AmazonPayClient
from storefront.db import Store, create_store_engine


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def public_key(private_key: rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    return private_key.public_key()


@pytest.fixture(scope="session")
def other_private_key() -> rsa.RSAPrivateKey:
    """A second pair: a signature made with it must never verify with `public_key`."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="session")
def public_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


BASE_NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
API = "https://pay-api.amazon.com/sandbox/v2"

Outcome = tuple[int, Any, Mapping[str, str]] | Exception


@dataclass
class Received:
    method: str
    url: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    authorization: signing.Authorization

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class FakeClock:
    """monotonic/sleep/now for the client: sleeping advances time instantly, nothing waits."""

    t: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def now(self) -> datetime:
        return BASE_NOW + timedelta(seconds=self.t)


class FakeAmazon:
    """Routes on a `responses` mock; each route plays its outcomes in order, repeating the last."""

    def __init__(self, rsps: responses.RequestsMock, public_key: rsa.RSAPublicKey) -> None:
        self.rsps = rsps
        self.public_key = public_key
        self.received: list[Received] = []
        self.on_request: Callable[[Received], None] | None = None

    def route(self, method: str, url: str, *outcomes: Outcome) -> None:
        queue: Iterator[Outcome] = iter(outcomes)
        last: list[Outcome] = [outcomes[-1]]

        def callback(request: requests.PreparedRequest) -> Any:
            self.received.append(self.verify(request))
            if self.on_request is not None:
                self.on_request(self.received[-1])
            outcome = next(queue, last[0])
            if isinstance(outcome, Exception):
                return outcome
            status, body, headers = outcome
            if isinstance(body, dict | list):
                body = json.dumps(body)
            return status, dict(headers), body

        self.rsps.add_callback(method, url, callback=callback)

    def verify(self, request: requests.PreparedRequest) -> Received:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = signing.parse_authorization(headers["authorization"])
        assert request.url is not None
        assert request.method is not None
        parts = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        canonical = signing.canonical_request(
            request.method, parts.path, parts.query, headers, auth.signed_headers, body
        )
        to_sign = signing.string_to_sign(auth.algorithm, canonical)
        assert signing.verify(self.public_key, to_sign, auth.signature, auth.algorithm), (
            "signature did not verify"
        )
        return Received(request.method, request.url, parts.path, headers, body, auth)


def session_json(
    session_id: str = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc", **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "checkoutSessionId": session_id,
        "statusDetails": {"state": "Open"},
        "paymentDetails": {"chargeAmount": {"amount": "12.50", "currencyCode": "USD"}},
        "merchantMetadata": {"merchantReferenceId": "order-1"},
    }
    data.update(extra)
    return data


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(private_key: rsa.RSAPrivateKey, clock: FakeClock) -> Callable[..., AmazonPayClient]:
    def make(**overrides: Any) -> AmazonPayClient:
        options: dict[str, Any] = {
            "public_key_id": "AKEYID123",
            "private_key": private_key,
            "sleep": clock.sleep,
            "monotonic": clock.monotonic,
            "now": clock.now,
        }
        options.update(overrides)
        return AmazonPayClient(**options)

    return make


@pytest.fixture
def fake_amazon(public_key: rsa.RSAPublicKey) -> Iterator[FakeAmazon]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmazon(rsps, public_key)


@pytest.fixture(scope="module")
def postgres_store_url(postgres_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """This module's PostgreSQL database, and a connection kept open to empty it between tests."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")  # a leaked lock fails the test, never hangs it
        yield postgres_url, conn


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    """A clean store per test: a new SQLite file, or this module's PostgreSQL database emptied
    (faster than a new database per test; the schema stays, at the latest revision)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:  # `postgres_url` fails (never skips) when PostgreSQL cannot start
        url, conn = request.getfixturevalue("postgres_store_url")
        tables = conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{name}"' for (name,) in tables.fetchall())
        if names:
            conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    created = Store(create_store_engine(url))
    created.upgrade()
    yield created
    created.engine.dispose()
