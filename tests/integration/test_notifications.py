"""`POST /notifications/amazon-pay`: signed IPNs settle pending checkouts; anything else is refused.

The app trusts the test simulator's certificate URL (as it trusts the embedded simulator's in
offline mode); every test runs on SQLite and PostgreSQL (`database_url`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amazonpay.errors import NotificationError
from amazonpay.simulator.notify import TOPIC_ARN, build_envelope, sns_string_to_sign
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


def signed(simulator: SimulatorHarness, **changes: Any) -> dict[str, Any]:
    """A notification signed by the simulator's certificate after `changes` (None deletes);
    a Signature among the changes replaces the real one."""
    assert simulator.simulator is not None
    forced_signature = changes.pop("Signature", None)
    data: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "4c5d7e0a-1f2b-4c3d-9e8f-0a1b2c3d4e5f",
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps({"ObjectType": "CHARGE", "ObjectId": "S01-0000000-0000000-C0"}),
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "1",
        "SigningCertURL": cert_url(simulator),
    }
    data.update(changes)
    data = {key: value for key, value in data.items() if value is not None}
    text = sns_string_to_sign({k: str(v) for k, v in data.items()})
    data["Signature"] = simulator.simulator.certificate.sign(
        text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    )
    if forced_signature is not None:
        data["Signature"] = forced_signature
    return data


def _json(simulator: SimulatorHarness, **changes: Any) -> bytes:
    return json.dumps(signed(simulator, **changes)).encode()


Body = Callable[[SimulatorHarness], bytes]
HOSTILE: list[Any] = [
    pytest.param(lambda sim: b"[" * 50_000, id="deep-array"),
    pytest.param(lambda sim: b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="deep-object"),
    pytest.param(lambda sim: _json(sim, Message="[" * 30_000 + "]" * 30_000), id="deep-message"),
    pytest.param(lambda sim: _json(sim, Extra=[[[[[[[[[["x"]]]]]]]]]]), id="deep-extra-key"),
    pytest.param(lambda sim: b"NaN", id="nan"),
    pytest.param(lambda sim: _json(sim).replace(b'"1"', b"Infinity"), id="infinity"),
    pytest.param(lambda sim: b"9" * 60_000, id="huge-int"),
    pytest.param(lambda sim: b"[1e999]", id="float-overflow"),
    pytest.param(lambda sim: _json(sim, Message='{"ObjectId": NaN}'), id="message-nan"),
    pytest.param(
        lambda sim: _json(sim).replace(b'{"Type": "Notification"', b'{"Type": "x", "Type": "x"'),
        id="duplicate-key",
    ),
    # Once a 500: trusted certificate, then the string to sign could not be encoded.
    pytest.param(lambda sim: _json(sim, Message="\ud800"), id="surrogate-message"),
    pytest.param(lambda sim: _json(sim, Subject="\udfff"), id="surrogate-subject"),
    pytest.param(lambda sim: _json(sim).decode().encode("utf-16"), id="utf-16"),
    pytest.param(lambda sim: b"\xef\xbb\xbf" + _json(sim), id="utf-8-bom"),
    pytest.param(lambda sim: b"\xc3\x28" + _json(sim), id="bad-utf-8"),
    pytest.param(lambda sim: b"\x00" * 100, id="nul"),
    pytest.param(lambda sim: b"null", id="null"),
    pytest.param(lambda sim: b"true", id="true"),
    pytest.param(lambda sim: b"42", id="number"),
    pytest.param(lambda sim: b'"text"', id="string"),
    pytest.param(lambda sim: _json(sim, Message={"ObjectId": "x"}), id="message-object"),
    pytest.param(lambda sim: _json(sim, Timestamp=1764410400), id="timestamp-number"),
    pytest.param(lambda sim: _json(sim, Timestamp="0001-01-01T00:00:00+01:00"), id="year-1"),
    pytest.param(lambda sim: _json(sim, Timestamp="9999-12-31T23:59:59-23:59"), id="year-9999"),
    pytest.param(lambda sim: _json(sim, SignatureVersion=1), id="version-number"),
    pytest.param(lambda sim: _json(sim, Type=["Notification"]), id="type-list"),
    pytest.param(lambda sim: _json(sim, Type=None), id="no-type"),
    pytest.param(lambda sim: _json(sim, SigningCertURL="https://[::1/x.pem"), id="cert-url-ipv6"),
    pytest.param(lambda sim: _json(sim, SigningCertURL="http://h:99999/x.pem"), id="cert-port"),
    pytest.param(lambda sim: _json(sim, SigningCertURL={"url": "x"}), id="cert-url-object"),
    pytest.param(lambda sim: _json(sim, Signature="é" * 344), id="signature-not-ascii"),
    pytest.param(lambda sim: _json(sim, Token=12, SubscribeURL=True), id="token-types"),
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_are_400_never_500(
    app: Flask, simulator: SimulatorHarness, body: Body
) -> None:
    response = app.test_client().post(IPN_PATH, data=body(simulator), content_type="text/plain")

    assert response.status_code == 400
    assert response.get_data(as_text=True) == "invalid notification\n"


def test_a_body_within_the_bounds_is_still_accepted(
    app: Flask, simulator: SimulatorHarness
) -> None:
    extra = [[[[[[["seven levels inside the envelope"]]]]]]]
    body = signed(simulator, MessageAttributes={"Kind": {"Type": "String", "Value": "ipn"}})
    body["Extra"] = extra  # not signed, and not part of the envelope we keep

    response = app.test_client().post(IPN_PATH, data=json.dumps(body), content_type="text/plain")

    assert response.status_code == 200


_SNS_KEYS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "Subject",
    "SubscribeURL",
    "Token",
    "UnsubscribeURL",
]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def ipn_bodies(draw: st.DrawFn, genuine: dict[str, Any]) -> bytes:
    """Any bytes, any JSON, SNS-shaped objects, and a genuine envelope with one key changed."""
    kind = draw(st.sampled_from(["bytes", "json", "shaped", "mutated", "nested"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "json":
        return json.dumps(draw(_json_values)).encode()
    if kind == "nested":
        opener = draw(st.sampled_from(["[", '{"a":', '{"Message": "[']))
        return (opener * draw(st.integers(1, 4000))).encode()  # under the 64 KiB body cap
    if kind == "shaped":
        keys = draw(st.lists(st.sampled_from(_SNS_KEYS), unique=True))
        values = st.text(max_size=40) | _json_values | st.sampled_from(list(genuine.values()))
        return json.dumps({key: draw(values) for key in keys}).encode()
    changed = dict(genuine)
    key = draw(st.sampled_from(_SNS_KEYS))
    changed[key] = draw(_json_values | st.text())
    return json.dumps(changed).encode("utf-8", "surrogatepass")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_body_is_answered_200_or_400_never_an_exception(
    app: Flask, simulator: SimulatorHarness, data: st.DataObject
) -> None:
    body = data.draw(ipn_bodies(signed(simulator)), label="body")
    # Nothing leaves the machine: only the test's simulator is reachable (its certificate).
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(simulator.base_url)
        response = app.test_client().post(IPN_PATH, data=body, content_type="text/plain")

    assert response.status_code in (200, 400)  # TESTING: an exception would propagate here


# -- SNS subscription confirmations (section 10) ----------------------------------------------

TOKEN = "2336412f37fb687f5d51e6e2425ba1f30ab1bd8c5b7a6d9f0e7c4c1c0a9b8d7e"
SNS_SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC_ARN}&Token={TOKEN}"
)


def confirmation(
    simulator: SimulatorHarness, kind: str = "SubscriptionConfirmation", **changes: Any
) -> dict[str, Any]:
    """A (un)subscription confirmation signed by the simulator's certificate."""
    fields: dict[str, Any] = {
        "Type": kind,
        "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.",
        "SubscribeURL": SNS_SUBSCRIBE_URL,
        "Token": TOKEN,
    }
    fields.update(changes)
    return signed(simulator, **fields)


@pytest.fixture
def http(simulator: SimulatorHarness) -> Iterator[responses.RequestsMock]:
    """The HTTP boundary: the test's simulator is reachable, every other URL answers from here."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(simulator.base_url)
        yield rsps


def fetched(rsps: responses.RequestsMock) -> list[str]:
    """The URLs the app asked for beyond the simulator (mocked or refused by `responses`)."""
    return [str(call.request.url) for call in rsps.calls]


def post(app: Flask, body: dict[str, Any]) -> Any:
    return app.test_client().post(
        IPN_PATH,
        data=json.dumps(body),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": str(body.get("Type"))},
    )


def test_a_signed_subscription_confirmation_is_confirmed_by_one_get(
    app: Flask,
    simulator: SimulatorHarness,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http.add(responses.GET, SNS_SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
    caplog.set_level(logging.INFO, logger="storefront")

    response = post(app, confirmation(simulator))

    assert response.status_code == 200
    assert fetched(http) == [SNS_SUBSCRIBE_URL]
    assert "subscription confirmed" in caplog.text
    assert TOPIC_ARN in caplog.text
    assert TOKEN not in caplog.text


def test_the_trusted_simulator_origin_may_be_the_subscribe_url(
    app: Flask, simulator: SimulatorHarness, http: responses.RequestsMock
) -> None:
    # Offline, the embedded simulator's origin is trusted as its certificate URL is.
    url = f"{simulator.base_url}/_simulator/confirm-subscription?Token={TOKEN}"
    http.add(responses.GET, url, body="confirmed")

    response = post(app, confirmation(simulator, SubscribeURL=url))

    assert response.status_code == 200
    assert fetched(http) == [url]


def _tampered_token(body: dict[str, Any]) -> dict[str, Any]:
    body["Token"] = TOKEN[::-1]
    return body


def _tampered_url(body: dict[str, Any]) -> dict[str, Any]:
    body["SubscribeURL"] = SNS_SUBSCRIBE_URL.replace("us-east-1", "eu-west-1")
    return body


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def remove(body: dict[str, Any]) -> dict[str, Any]:
        del body[key]
        return body

    return remove


def _two_hours_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


Confirmation = Callable[[SimulatorHarness], dict[str, Any]]
REFUSED_CONFIRMATIONS: list[Any] = [
    pytest.param(
        lambda sim: confirmation(sim, SubscribeURL="https://evil.example/?Token=" + TOKEN),
        id="foreign-host",
    ),
    pytest.param(
        lambda sim: confirmation(
            sim, SubscribeURL="https://sns.us-east-1.amazonaws.com.evil.example/?Token=" + TOKEN
        ),
        id="host-suffix",
    ),
    pytest.param(
        lambda sim: confirmation(sim, SubscribeURL=SNS_SUBSCRIBE_URL.replace("https:", "http:")),
        id="plain-http",
    ),
    pytest.param(
        lambda sim: confirmation(sim, SubscribeURL="http://127.0.0.1:9/confirm"),
        id="other-local-origin",
    ),
    pytest.param(lambda sim: _tampered_token(confirmation(sim)), id="token-changed"),
    pytest.param(lambda sim: _tampered_url(confirmation(sim)), id="url-changed"),
    pytest.param(lambda sim: _without("Signature")(confirmation(sim)), id="unsigned"),
    pytest.param(lambda sim: _without("Token")(confirmation(sim)), id="no-token"),
    pytest.param(lambda sim: confirmation(sim, Timestamp=_two_hours_ago()), id="stale"),
]


@pytest.mark.parametrize("make", REFUSED_CONFIRMATIONS)
def test_an_unverified_or_foreign_confirmation_is_400_and_fetches_nothing(
    app: Flask,
    simulator: SimulatorHarness,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    make: Confirmation,
) -> None:
    http.add(responses.GET, SNS_SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")

    response = post(app, make(simulator))

    assert response.status_code == 400
    assert fetched(http) == []
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"status": 500}, id="sns-error"),
        pytest.param({"status": 301, "headers": {"Location": "https://evil.example/"}}, id="moved"),
        pytest.param({"body": requests.ConnectTimeout("timed out")}, id="timeout"),
    ],
)
def test_a_failed_confirmation_is_503_so_sns_sends_it_again(
    app: Flask,
    simulator: SimulatorHarness,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
) -> None:
    http.add(responses.GET, SNS_SUBSCRIBE_URL, **answer)

    response = post(app, confirmation(simulator))

    assert response.status_code == 503
    assert fetched(http) == [SNS_SUBSCRIBE_URL]  # once, and the redirect is not followed
    assert "subscription not confirmed" in caplog.text
    assert TOKEN not in caplog.text


def test_a_signed_unsubscribe_confirmation_is_acknowledged_and_nothing_is_fetched(
    app: Flask,
    simulator: SimulatorHarness,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="storefront")
    body = confirmation(simulator, "UnsubscribeConfirmation")

    response = post(app, body)

    assert response.status_code == 200
    assert fetched(http) == []
    assert "unsubscribe confirmation" in caplog.text
    assert TOKEN not in caplog.text
    _tampered_token(body)
    assert post(app, body).status_code == 400


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
        verifier.check_subscribe_url(
            f"{offline.extensions['simulator'].base_url}/any/path?Action=ConfirmSubscription"
        )
        with pytest.raises(NotificationError):
            verifier.check_subscribe_url("http://127.0.0.1:9/any/path?Action=ConfirmSubscription")
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
