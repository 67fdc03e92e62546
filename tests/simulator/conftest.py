"""Fixtures for the simulator tests: RSA keys made once, a simulator on an ephemeral port per test,
and a raw signed-HTTP caller built only on `requests` and `amazonpay.signing`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay import signing
from amazonpay.simulator import SIMULATOR_STORE_ID, ServerHandle, Simulator, serve_in_thread

SANDBOX_KEY_ID = "SANDBOX-AFVX7ULWSGBZ5535PCUQOY7B"
LIVE_KEY_ID = "LIVE-AFVX7ULWSGBZ5535PCUQOY7B"
PLAIN_KEY_ID = "AFVX7ULWSGBZ5535PCUQOY7B"
OTHER_KEY_ID = "SANDBOX-OTHERKEY000000000000000"
USD_14 = {"amount": "14.00", "currencyCode": "USD"}


@dataclass(frozen=True)
class Keys:
    private: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey  # registered under OTHER_KEY_ID
    stranger: rsa.RSAPrivateKey  # registered nowhere

    def public_pem(self, key: rsa.RSAPrivateKey) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@pytest.fixture(scope="session")
def keys() -> Keys:
    def make() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return Keys(make(), make(), make())


def public_keys(keys: Keys) -> dict[str, Any]:
    pem = keys.public_pem(keys.private)
    return {
        SANDBOX_KEY_ID: pem,
        LIVE_KEY_ID: pem,
        PLAIN_KEY_ID: keys.private.public_key(),
        OTHER_KEY_ID: keys.public_pem(keys.other),
    }


@pytest.fixture
def simulator(keys: Keys) -> Simulator:
    return Simulator(public_keys=public_keys(keys))


@pytest.fixture
def server(simulator: Simulator) -> Iterator[ServerHandle]:
    handle = serve_in_thread(simulator)
    yield handle
    handle.shutdown()


@dataclass
class Api:
    """Sends requests signed exactly like the SDKs do (section 1), with knobs to tamper."""

    base_url: str
    keys: Keys
    key_id: str = SANDBOX_KEY_ID
    prefix: str = "/v2"
    algorithm: signing.Algorithm = signing.Algorithm.PSS_V2
    http: requests.Session = field(default_factory=requests.Session)

    def signed_headers(
        self,
        method: str,
        path: str,
        body: str,
        *,
        idempotency_key: str | None = None,
        date: str | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
        algorithm: signing.Algorithm | None = None,
        salt_algorithm: signing.Algorithm | None = None,
        extra_signed: Mapping[str, str] | None = None,
        sign_idempotency_key: bool = True,
        host: str = "pay-api.amazon.com",
    ) -> dict[str, str]:
        alg = algorithm or self.algorithm
        headers = {
            "accept": "application/json",
            "content-type": "application/json",
            "x-amz-pay-date": date or signing.format_amz_date(datetime.now(UTC)),
            "x-amz-pay-host": host,
            "x-amz-pay-region": "na",
        }
        headers.update(extra_signed or {})
        if idempotency_key is not None and sign_idempotency_key:
            headers["x-amz-pay-idempotency-key"] = idempotency_key
        names = sorted(headers)
        raw_path, _, query = path.partition("?")
        canonical = signing.canonical_request(method, raw_path, query, headers, names, body)
        to_sign = signing.string_to_sign(alg, canonical)
        # salt_algorithm lets a test claim one algorithm and sign with the other's salt.
        signature = signing.sign(private_key or self.keys.private, to_sign, salt_algorithm or alg)
        headers["authorization"] = signing.authorization_header(
            alg, key_id or self.key_id, ";".join(names), signature
        )
        if idempotency_key is not None and not sign_idempotency_key:
            headers["x-amz-pay-idempotency-key"] = idempotency_key
        return headers

    def call(
        self,
        method: str,
        resource: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        prefix: str | None = None,
        raw_body: str | None = None,
        **sign_options: Any,
    ) -> requests.Response:
        path = (self.prefix if prefix is None else prefix) + resource
        body = (
            raw_body if raw_body is not None else ("" if payload is None else json.dumps(payload))
        )
        headers = self.signed_headers(
            method, path, body, idempotency_key=idempotency_key, **sign_options
        )
        return self.http.request(
            method, self.base_url + path, data=body.encode(), headers=headers, timeout=10
        )

    # Shorthands for the happy paths.
    def create_session(self, payload: Mapping[str, Any], key: str = "create-1") -> dict[str, Any]:
        response = self.call("POST", "/checkoutSessions", payload, idempotency_key=key)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def control(self, path: str, payload: Any = None) -> requests.Response:
        return self.http.post(f"{self.base_url}/_simulator/{path}", json=payload or {}, timeout=10)


def session_payload(
    amount: str = "14.00",
    intent: str = "Authorize",
    return_url: str = "https://shop.example/checkout/return",
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "storeId": SIMULATOR_STORE_ID,
        "webCheckoutDetails": {
            "checkoutResultReturnUrl": return_url,
            "checkoutMode": "ProcessOrder",
        },
        "paymentDetails": {
            "paymentIntent": intent,
            "chargeAmount": {"amount": amount, "currencyCode": "USD"},
            "canHandlePendingAuthorization": True,
        },
        "merchantMetadata": {"merchantReferenceId": "order-1", "merchantStoreName": "Demo Shop"},
    }
    payload.update(extra)
    return payload


def complete(
    api: Api, session_id: str, body: Any = None, key: str | None = None, **sign_options: Any
) -> requests.Response:
    """Complete a session; the body defaults to a charge of USD_14."""
    return api.call(
        "POST",
        f"/checkoutSessions/{session_id}/complete",
        {"chargeAmount": USD_14} if body is None else body,
        idempotency_key=key,
        **sign_options,
    )


def setup_only_payload() -> dict[str, Any]:
    return {
        "storeId": SIMULATOR_STORE_ID,
        "chargePermissionType": "PaymentMethodOnFile",
        "paymentMethodOnFileMetadata": {"setupOnly": True},
        "webCheckoutDetails": {
            "checkoutResultReturnUrl": "https://shop.example/wallet/return?x=1",
            "checkoutMode": "ProcessOrder",
        },
        "paymentDetails": {"paymentIntent": "Confirm"},
    }


@pytest.fixture
def api(server: ServerHandle, keys: Keys) -> Api:
    return Api(server.base_url, keys)


@pytest.fixture
def buyer_session(api: Api) -> dict[str, Any]:
    """An Open session whose buyer picked the succeeding card (no browser needed)."""
    session = api.create_session(session_payload())
    response = api.control(
        f"sessions/{session['checkoutSessionId']}/outcome", {"outcome": "success"}
    )
    assert response.status_code == 200, response.text
    return session


def saved_wallet(api: Api, outcome: str = "success") -> str:
    """A saved wallet (setup-only PaymentMethodOnFile) whose buyer chose `outcome`'s card; the
    id of its Charge Permission."""
    sid = api.create_session(setup_only_payload(), key=f"setup-{outcome}")["checkoutSessionId"]
    chosen = api.control(f"sessions/{sid}/outcome", {"outcome": outcome})
    assert chosen.status_code == 200, chosen.text
    response = complete(api, sid, {})
    assert response.status_code == 200, response.text
    permission_id: str = response.json()["chargePermissionId"]
    return permission_id


@pytest.fixture
def wallet(api: Api) -> str:
    """The Charge Permission id of a saved wallet with the succeeding card (1111)."""
    return saved_wallet(api)


def create_charge(
    api: Api,
    permission_id: str,
    amount: str = "14.00",
    key: str = "charge-1",
    simulation: str | None = None,
    **fields: Any,
) -> requests.Response:
    """Create Charge on a saved wallet the way the shop does it (contract: `CITU` on the web),
    optionally with a sandbox simulation string (docs section 11)."""
    body: dict[str, Any] = {
        "chargePermissionId": permission_id,
        "chargeAmount": {"amount": amount, "currencyCode": "USD"},
        "chargeInitiator": "CITU",
        "channel": "Web",
        "captureNow": False,
        **fields,
    }
    extra = {"x-amz-pay-simulation-code": simulation} if simulation else None
    return api.call("POST", "/charges", body, idempotency_key=key, extra_signed=extra)
