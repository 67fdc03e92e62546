"""IPN (docs section 10): SNS envelopes posted to notify_url, verified here with the certificate
the simulator serves, exactly as a merchant's receiver would do it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from amazonpay.simulator import SIMULATOR_MERCHANT_ID, Simulator, serve_in_thread
from tests.simulator.conftest import Api, Keys, complete, public_keys, session_payload
from tests.support.receiver import IpnReceiver, ipn_receiver

Envelope = tuple[dict[str, str], dict[str, Any]]


@pytest.fixture
def receiver() -> Iterator[IpnReceiver]:
    with ipn_receiver() as ipn:
        yield ipn


def sns_string_to_sign(envelope: dict[str, str]) -> str:
    # AWS's documented order for Notification messages.
    keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    return "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope)


def verify(envelope: dict[str, str]) -> None:
    pem = requests.get(envelope["SigningCertURL"], timeout=5).content
    public_key = x509.load_pem_x509_certificate(pem).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(
        base64.b64decode(envelope["Signature"]),
        sns_string_to_sign(envelope).encode(),
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303 - SNS SignatureVersion 1 is SHA1 (section 10)
    )


def collect(receiver: IpnReceiver, count: int) -> list[Envelope]:
    """Up to `count` notifications as (headers, parsed SNS envelope), waiting up to 5 s."""
    return [(headers, json.loads(body)) for headers, body in receiver.collect(count, timeout=5)]


def complete_session(api: Api, outcome: str = "success", **payload: Any) -> requests.Response:
    """Create a session, let the buyer's `outcome` play, then Complete it for 14.00 USD."""
    sid = api.create_session(session_payload(**payload))["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": outcome})
    return complete(api, sid)


def test_completion_capture_and_refund_send_signed_notifications(
    keys: Keys, receiver: IpnReceiver
) -> None:
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), notify_url=receiver.url))
    try:
        api = Api(handle.base_url, keys)
        done = complete_session(api).json()
        messages = collect(receiver, 2)
        assert len(messages) == 2
        for headers, envelope in messages:
            assert headers["content-type"].startswith("text/plain")
            assert headers["x-amz-sns-message-type"] == "Notification"
            assert envelope["Type"] == "Notification"
            assert envelope["SignatureVersion"] == "1"
            assert envelope["SigningCertURL"] == handle.base_url + "/_simulator/sns-cert.pem"
            assert envelope["TopicArn"]
            assert envelope["MessageId"]
            assert envelope["Timestamp"]
            verify(envelope)
        inner = [json.loads(e["Message"]) for _, e in messages]
        assert {(m["ObjectType"], m["ObjectId"]) for m in inner} == {
            ("CHARGE_PERMISSION", done["chargePermissionId"]),
            ("CHARGE", done["chargeId"]),
        }
        for message in inner:
            assert message["MerchantID"] == SIMULATOR_MERCHANT_ID
            assert message["ChargePermissionId"] == done["chargePermissionId"]
            assert message["NotificationType"] == "STATE_CHANGE"
            assert message["NotificationVersion"] == "V2"
            assert message["NotificationId"]

        api.call(
            "POST",
            f"/charges/{done['chargeId']}/capture",
            {"captureAmount": {"amount": "14.00", "currencyCode": "USD"}},
            idempotency_key="cap",
        )
        refund = api.call(
            "POST",
            "/refunds",
            {"chargeId": done["chargeId"], "refundAmount": {"amount": "1", "currencyCode": "USD"}},
            idempotency_key="ref",
        ).json()
        later = [json.loads(e["Message"]) for _, e in collect(receiver, 2)]
        assert [(m["ObjectType"], m["ObjectId"]) for m in later] == [
            ("CHARGE", done["chargeId"]),
            ("REFUND", refund["refundId"]),
        ]
    finally:
        handle.shutdown()


def test_a_tampered_notification_fails_verification(keys: Keys, receiver: IpnReceiver) -> None:
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), notify_url=receiver.url))
    try:
        api = Api(handle.base_url, keys)
        complete_session(api, intent="Confirm")
        ((_, envelope),) = collect(receiver, 1)
        verify(envelope)
        envelope["Message"] = envelope["Message"].replace("STATE_CHANGE", "ATTRIBUTE_CHANGE")
        with pytest.raises(InvalidSignature):
            verify(envelope)
    finally:
        handle.shutdown()


def test_an_unreachable_receiver_does_not_break_the_api(keys: Keys) -> None:
    handle = serve_in_thread(
        Simulator(public_keys=public_keys(keys), notify_url="http://127.0.0.1:9/nowhere")
    )
    try:
        api = Api(handle.base_url, keys)
        response = complete_session(api)
        assert response.status_code == 200
    finally:
        handle.shutdown()


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_pending_authorization_settles_and_notifies_without_any_request(
    keys: Keys, receiver: IpnReceiver
) -> None:
    clock = FakeClock()
    simulator = Simulator(public_keys=public_keys(keys), notify_url=receiver.url, clock=clock)
    handle = serve_in_thread(simulator)
    try:
        api = Api(handle.base_url, keys)
        response = complete_session(api, "pending")
        assert response.status_code == 202
        assert len(collect(receiver, 2)) == 2  # permission created, charge initiated
        clock.now += timedelta(seconds=31)
        ((_, envelope),) = collect(receiver, 1)
        message = json.loads(envelope["Message"])
        assert (message["ObjectType"], message["ObjectId"]) == (
            "CHARGE",
            response.json()["chargeId"],
        )
        charge = api.call("GET", f"/charges/{message['ObjectId']}").json()
        assert charge["statusDetails"]["state"] == "Authorized"
    finally:
        handle.shutdown()
