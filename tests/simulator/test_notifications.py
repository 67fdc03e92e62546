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
from tests.simulator.conftest import (
    USD_14,
    Api,
    Keys,
    complete,
    create_charge,
    public_keys,
    saved_wallet,
    session_payload,
)
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


# -- an IPN for every change of a Charge Permission, Charge or Refund ---------------------------

Change = tuple[str, str, str]  # ObjectType, ObjectId, NotificationType


@pytest.fixture
def notified(keys: Keys, receiver: IpnReceiver) -> Iterator[Api]:
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), notify_url=receiver.url))
    yield Api(handle.base_url, keys)
    handle.shutdown()


def changes(receiver: IpnReceiver, count: int, permission_id: str) -> list[Change]:
    """The next `count` notifications, checked for the permission id and for nothing extra."""
    got = [json.loads(e["Message"]) for _, e in collect(receiver, count)]
    assert all(m["ChargePermissionId"] == permission_id for m in got), got
    assert receiver.collect(1, timeout=0.3) == [], "an unexpected extra notification"
    return [(m["ObjectType"], m["ObjectId"], m["NotificationType"]) for m in got]


def test_saved_wallet_changes_notify(notified: Api, receiver: IpnReceiver) -> None:
    api = notified
    wallet = saved_wallet(api)
    permission = ("CHARGE_PERMISSION", wallet)
    assert changes(receiver, 1, wallet) == [(*permission, "STATE_CHANGE")]
    api.control(f"charge-permissions/{wallet}/buyer", {"action": "expire_card"})
    assert changes(receiver, 1, wallet) == [(*permission, "STATE_CHANGE")]
    api.control(f"charge-permissions/{wallet}/buyer", {"action": "expire_card"})  # no change
    api.control(f"charge-permissions/{wallet}/buyer", {"action": "fix_card"})
    assert changes(receiver, 2, wallet) == [
        (*permission, "ATTRIBUTE_CHANGE"),
        (*permission, "STATE_CHANGE"),
    ]
    api.call("PATCH", f"/chargePermissions/{wallet}", {"merchantMetadata": {"noteToBuyer": "x"}})
    assert changes(receiver, 1, wallet) == [(*permission, "ATTRIBUTE_CHANGE")]
    api.call("DELETE", f"/chargePermissions/{wallet}/close", {"closureReason": "removed"})
    assert changes(receiver, 1, wallet) == [(*permission, "STATE_CHANGE")]


def test_charge_and_refund_changes_notify(notified: Api, receiver: IpnReceiver) -> None:
    api = notified
    wallet = saved_wallet(api)
    changes(receiver, 1, wallet)

    charge_id = create_charge(api, wallet, key="c1").json()["chargeId"]
    charge = ("CHARGE", charge_id, "STATE_CHANGE")
    assert changes(receiver, 1, wallet) == [charge]  # Authorized
    api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": USD_14},
        idempotency_key="cap",
    )
    assert changes(receiver, 1, wallet) == [charge]  # Captured
    refund_id = refund(api, charge_id, "4.00", "r1")
    assert changes(receiver, 1, wallet) == [("REFUND", refund_id, "STATE_CHANGE")]  # initiated
    api.control("clock", {"advance_seconds": 6})
    assert changes(receiver, 1, wallet) == [("REFUND", refund_id, "STATE_CHANGE")]  # Refunded
    declined_id = refund(api, charge_id, "4.00", "r2")
    api.control(f"refunds/{declined_id}/outcome", {"outcome": "Declined"})
    assert changes(receiver, 2, wallet) == [("REFUND", declined_id, "STATE_CHANGE")] * 2

    assert create_charge(api, wallet, key="no", simulation="HardDeclined").status_code == 400
    api.control(
        f"charge-permissions/{wallet}/next-charges", {"outcome": "Authorized", "pending": True}
    )
    pending_id = create_charge(api, wallet, key="c2", canHandlePendingAuthorization=True).json()[
        "chargeId"
    ]
    assert changes(receiver, 1, wallet) == [("CHARGE", pending_id, "STATE_CHANGE")]  # initiated
    api.control("clock", {"advance_seconds": 31})
    assert changes(receiver, 1, wallet) == [("CHARGE", pending_id, "STATE_CHANGE")]  # Authorized
    api.call(
        "POST",
        f"/charges/{pending_id}/capture",
        {"captureAmount": USD_14},
        idempotency_key="cap2",
        extra_signed={"x-amz-pay-simulation-code": "CaptureInitiated"},
    )
    api.control("clock", {"advance_seconds": 31})
    assert changes(receiver, 2, wallet) == [("CHARGE", pending_id, "STATE_CHANGE")] * 2

    canceled_id = create_charge(api, wallet, key="c3").json()["chargeId"]
    api.call("DELETE", f"/charges/{canceled_id}/cancel", {"cancellationReason": "x"})
    assert changes(receiver, 2, wallet) == [("CHARGE", canceled_id, "STATE_CHANGE")] * 2
    unused_id = create_charge(api, wallet, key="c4").json()["chargeId"]
    api.control("clock", {"advance_seconds": 31 * 86400})  # ExpiredUnused
    assert changes(receiver, 2, wallet) == [("CHARGE", unused_id, "STATE_CHANGE")] * 2


def test_a_one_time_permission_expiry_notifies(notified: Api, receiver: IpnReceiver) -> None:
    done = complete_session(notified, intent="Confirm").json()
    permission_id = done["chargePermissionId"]
    expected = [("CHARGE_PERMISSION", permission_id, "STATE_CHANGE")]
    assert changes(receiver, 1, permission_id) == expected
    notified.control("clock", {"advance_seconds": 181 * 86400})
    assert changes(receiver, 1, permission_id) == expected


def refund(api: Api, charge_id: str, amount: str, key: str) -> str:
    price = {"amount": amount, "currencyCode": "USD"}
    response = api.call(
        "POST", "/refunds", {"chargeId": charge_id, "refundAmount": price}, idempotency_key=key
    )
    assert response.status_code == 201, response.text
    refund_id: str = response.json()["refundId"]
    return refund_id
