"""`POST /notifications/amazon-pay`: signed IPNs settle pending checkouts; anything else is refused.

The app trusts the test simulator's certificate URL (as it trusts the embedded simulator's in
offline mode); every test runs on SQLite and PostgreSQL (`database_url`).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from amazonpay.errors import NotificationError
from amazonpay.simulator.notify import build_envelope, sns_string_to_sign
from amazonpay.simulator.state import Event
from app import create_app
from storefront.db import Claim, Store
from storefront.states import ClaimState
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness
from tests.support.servers import APP_VARIABLES

IPN_PATH = "/notifications/amazon-pay"


def cert_url(simulator: SimulatorHarness) -> str:
    return f"{simulator.base_url}/_simulator/sns-cert.pem"


@pytest.fixture
def app(app_factory: AppFactory, simulator: SimulatorHarness) -> Flask:
    return app_factory(NOTIFICATION_CERT_URLS=[cert_url(simulator)])


def store_of(app: Flask) -> Store:
    store: Store = app.extensions["shop"].store
    return store


def authorization_pending(app: Flask, buyer: Buyer) -> Claim:
    """A one-time checkout whose Complete answered 202: the buyer sees "being confirmed"."""
    buyer.add_to_cart("mug")
    session_id, _ = buyer.press_button("/checkout")
    page = buyer.client.get(buyer.choose(session_id, "0701"))
    assert page.status_code == 200
    assert 'data-testid="pending"' in page.get_data(as_text=True)
    claim = store_of(app).ledger.get(session_id)
    assert claim is not None
    assert claim.status == ClaimState.PENDING
    assert claim.charge_id
    assert claim.charge_permission_id
    return claim


def authorize(simulator: SimulatorHarness, charge_id: str) -> None:
    response = simulator.http.post(
        f"{simulator.base_url}/_simulator/charges/{charge_id}/outcome",
        json={"outcome": "Authorized"},
        timeout=5,
    )
    response.raise_for_status()


def envelope_for(simulator: SimulatorHarness, claim: Claim, **changes: Any) -> dict[str, str]:
    """A notification about the claim's charge, signed by the simulator's certificate."""
    assert simulator.simulator is not None
    assert claim.charge_id is not None
    assert claim.charge_permission_id is not None
    return build_envelope(
        Event("CHARGE", claim.charge_id, claim.charge_permission_id),
        merchant_id=simulator.simulator.merchant_id,
        cert=simulator.simulator.certificate,
        cert_url=changes.pop("cert_url", cert_url(simulator)),
        now=changes.pop("now", datetime.now(UTC)),
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_simulator_notification_settles_the_pending_checkout(
    app: Flask,
    buyer: Buyer,
    simulator: SimulatorHarness,
    live_app: Callable[[Flask], str],
) -> None:
    assert simulator.simulator is not None
    simulator.simulator.notify_url = live_app(app) + IPN_PATH
    claim = authorization_pending(app, buyer)
    assert claim.charge_id is not None
    store = store_of(app)

    authorize(simulator, claim.charge_id)  # Amazon posts a signed CHARGE state change

    def settled() -> bool:
        current = store.ledger.get(claim.checkout_session_id)
        return current is not None and current.status == ClaimState.COMPLETED

    assert wait_for(settled), "the notification did not settle the claim"
    order = store.orders.get(claim.reference)
    assert order is not None
    assert order.charge_id == claim.charge_id
    calls = len(simulator.requests_log())
    refreshed = buyer.client.get(f"/checkout/result/{claim.reference}")
    assert refreshed.status_code == 200
    assert "your order is confirmed" in refreshed.get_data(as_text=True)
    assert len(simulator.operations("CompleteCheckoutSession")) == 1
    assert len(simulator.requests_log()) == calls


def test_a_signed_notification_is_accepted_without_csrf_token_or_cookie(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    claim = authorization_pending(app, buyer)
    assert claim.charge_id is not None
    authorize(simulator, claim.charge_id)
    amazon = app.test_client()  # Amazon: no cookie, no form token

    response = amazon.post(
        IPN_PATH,
        data=json.dumps(envelope_for(simulator, claim)),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": "Notification"},
    )

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    settled = store_of(app).ledger.get(claim.checkout_session_id)
    assert settled is not None
    assert settled.status == ClaimState.COMPLETED


def _tampered_message(envelope: dict[str, str]) -> None:
    message = json.loads(envelope["Message"])
    message["ObjectId"] = "S01-0000000-0000000-C000001"
    envelope["Message"] = json.dumps(message)


def _flipped_signature(envelope: dict[str, str]) -> None:
    raw = bytearray(base64.b64decode(envelope["Signature"]))
    raw[0] ^= 0x01
    envelope["Signature"] = base64.b64encode(bytes(raw)).decode("ascii")


def _unsigned(envelope: dict[str, str]) -> None:
    del envelope["Signature"]


def _wrong_cert_url(envelope: dict[str, str]) -> None:
    envelope["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"


def _other_local_cert_url(envelope: dict[str, str]) -> None:
    envelope["SigningCertURL"] = "http://127.0.0.1:9/_simulator/sns-cert.pem"


def _version_2_claimed(envelope: dict[str, str]) -> None:
    envelope["SignatureVersion"] = "2"  # signed with SHA1 (version 1), claims SHA256


@pytest.mark.parametrize(
    "tamper",
    [
        _tampered_message,
        _flipped_signature,
        _unsigned,
        _wrong_cert_url,
        _other_local_cert_url,
        _version_2_claimed,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_tampered_unsigned_or_untrusted_notifications_are_refused(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness, tamper: Callable[[dict[str, str]], None]
) -> None:
    claim = authorization_pending(app, buyer)
    assert claim.charge_id is not None
    authorize(simulator, claim.charge_id)
    envelope = envelope_for(simulator, claim)
    tamper(envelope)
    calls = len(simulator.requests_log())

    response = app.test_client().post(
        IPN_PATH, data=json.dumps(envelope), content_type="text/plain"
    )

    assert response.status_code == 400
    assert store_of(app).ledger.get(claim.checkout_session_id) == claim  # nothing changed
    assert store_of(app).orders.get(claim.reference) is None
    assert len(simulator.requests_log()) == calls  # Amazon was not asked


def test_a_stale_notification_signed_correctly_is_refused(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    claim = authorization_pending(app, buyer)
    envelope = envelope_for(simulator, claim, now=datetime.now(UTC) - timedelta(hours=2))
    assert simulator.simulator is not None
    assert envelope["Signature"] == simulator.simulator.certificate.sign(
        sns_string_to_sign({k: v for k, v in envelope.items() if k != "Signature"})
    )

    response = app.test_client().post(IPN_PATH, data=json.dumps(envelope))

    assert response.status_code == 400
    assert store_of(app).ledger.get(claim.checkout_session_id) == claim


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b'{"Type": "Notification"}', json.dumps({"a": 1})],
    ids=["empty", "text", "not-utf8", "array", "incomplete", "other-object"],
)
def test_malformed_bodies_are_400_never_500(app: Flask, body: bytes | str) -> None:
    response = app.test_client().post(IPN_PATH, data=body, content_type="text/plain")

    assert response.status_code == 400


def test_an_oversized_body_is_refused_by_the_size_limit(app: Flask) -> None:
    response = app.test_client().post(IPN_PATH, data=b"{" + b" " * 70_000 + b"}")

    assert response.status_code == 413


def test_get_is_405(app: Flask) -> None:
    response = app.test_client().get(IPN_PATH)

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_the_csrf_exemption_is_only_this_endpoint(app: Flask) -> None:
    client = app.test_client()

    assert client.post("/cart/add", data={"product_id": "mug"}).status_code == 400
    assert client.post("/cart/clear").status_code == 400
    assert client.post(IPN_PATH + "/x", data=b"{}").status_code == 404


def test_offline_mode_trusts_the_embedded_simulators_certificate_only(
    tmp_path: Path, database_url: str
) -> None:
    config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
    config.update(
        {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url, "TESTING": True}
    )
    offline = create_app(config)
    try:
        services = offline.extensions["shop"]
        verifier = services.notifications
        verifier.check_cert_url(
            f"{offline.extensions['simulator'].base_url}/_simulator/sns-cert.pem"
        )
        verifier.check_cert_url(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
        )
        for untrusted in (
            f"{offline.extensions['simulator'].base_url}/other.pem",
            "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
            "https://example.com/sns-cert.pem",
        ):
            with pytest.raises(NotificationError):
                verifier.check_cert_url(untrusted)
    finally:
        offline.extensions["shop"].close()


def test_credentials_mode_trusts_no_local_certificate(app_factory: AppFactory) -> None:
    verifier = app_factory().extensions["shop"].notifications

    with pytest.raises(NotificationError):
        verifier.check_cert_url("http://127.0.0.1:8443/_simulator/sns-cert.pem")
