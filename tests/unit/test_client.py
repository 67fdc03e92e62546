"""AmazonPayClient on the wire: every operation's signed request, URLs, errors, key and logging."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay import errors, signing
from amazonpay.client import AmazonPayClient, RetryPolicy, checkout_js_url, idempotency_key_for
from amazonpay.models import (
    Channel,
    Charge,
    ChargeInitiator,
    ChargePermission,
    ChargePermissionState,
    ChargeState,
    CheckoutSession,
    CompleteResult,
    Price,
    Refund,
    RefundState,
)
from tests.unit.conftest import session_json

if TYPE_CHECKING:
    from conftest import FakeAmazon

API = "https://pay-api.amazon.com/sandbox/v2"
SESSION_ID = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc"
SIGNED_GET = ["accept", "content-type", "x-amz-pay-date", "x-amz-pay-host", "x-amz-pay-region"]
SIGNED_POST = sorted([*SIGNED_GET, "x-amz-pay-idempotency-key"])
USD = Price.of("12.50", "USD")
KEY = idempotency_key_for("order-42")  # a caller's key: 32 hex digits derived from its reference


CHARGE = {"chargeId": "S01-1111111-2222222-C000001", "statusDetails": {"state": "Authorized"}}
PERMISSION = {"chargePermissionId": "S01-1111111-2222222", "statusDetails": {"state": "Chargeable"}}
REFUND = {"refundId": "S01-1111111-2222222-R000001", "statusDetails": {"state": "RefundInitiated"}}

# (name, call, method, path, expected request body, response status, response body, check)
OPERATIONS: list[tuple[str, Callable[[AmazonPayClient], Any], str, str, Any, int, Any, Any]] = [
    (
        "create_checkout_session",
        lambda c: c.create_checkout_session({"storeId": "amzn1.x", "chargeAmount": USD}),
        "POST",
        "/checkoutSessions",
        {"storeId": "amzn1.x", "chargeAmount": {"amount": "12.50", "currencyCode": "USD"}},
        201,
        session_json(),
        lambda r: isinstance(r, CheckoutSession) and r.checkout_session_id == SESSION_ID,
    ),
    (
        "get_checkout_session",
        lambda c: c.get_checkout_session(SESSION_ID),
        "GET",
        f"/checkoutSessions/{SESSION_ID}",
        None,
        200,
        session_json(),
        lambda r: (
            r.state == "Open" and r.charge_amount == USD and r.merchant_reference_id == "order-1"
        ),
    ),
    (
        "update_checkout_session",
        lambda c: c.update_checkout_session(SESSION_ID, {"paymentDetails": {"chargeAmount": USD}}),
        "PATCH",
        f"/checkoutSessions/{SESSION_ID}",
        {"paymentDetails": {"chargeAmount": {"amount": "12.50", "currencyCode": "USD"}}},
        200,
        session_json(),
        lambda r: r.checkout_session_id == SESSION_ID,
    ),
    (
        "complete_checkout_session",
        lambda c: c.complete_checkout_session(SESSION_ID, USD, total_order_amount=USD),
        "POST",
        f"/checkoutSessions/{SESSION_ID}/complete",
        {
            "chargeAmount": {"amount": "12.50", "currencyCode": "USD"},
            "totalOrderAmount": {"amount": "12.50", "currencyCode": "USD"},
        },
        200,
        session_json(statusDetails={"state": "Completed"}, chargeId="C1", chargePermissionId="P1"),
        lambda r: (
            isinstance(r, CompleteResult)
            and not r.authorization_pending
            and r.checkout_session.state == "Completed"
            and r.checkout_session.charge_id == "C1"
        ),
    ),
    (
        "complete_checkout_session setup-only",
        lambda c: c.complete_checkout_session(SESSION_ID),
        "POST",
        f"/checkoutSessions/{SESSION_ID}/complete",
        {},
        202,
        session_json(statusDetails={"state": "Completed"}),
        lambda r: r.authorization_pending,
    ),
    (
        "get_charge_permission",
        lambda c: c.get_charge_permission("S01-1111111-2222222"),
        "GET",
        "/chargePermissions/S01-1111111-2222222",
        None,
        200,
        PERMISSION,
        lambda r: isinstance(r, ChargePermission) and r.state is ChargePermissionState.CHARGEABLE,
    ),
    (
        "update_charge_permission",
        lambda c: c.update_charge_permission(
            "S01-1111111-2222222", {"merchantMetadata": {"merchantReferenceId": "o-2"}}
        ),
        "PATCH",
        "/chargePermissions/S01-1111111-2222222",
        {"merchantMetadata": {"merchantReferenceId": "o-2"}},
        200,
        PERMISSION,
        lambda r: r.charge_permission_id == "S01-1111111-2222222",
    ),
    (
        "close_charge_permission",
        lambda c: c.close_charge_permission("S01-1111111-2222222", "No more orders", True),
        "DELETE",
        "/chargePermissions/S01-1111111-2222222/close",
        {"closureReason": "No more orders", "cancelPendingCharges": True},
        200,
        {**PERMISSION, "statusDetails": {"state": "Closed"}},
        lambda r: r.state is ChargePermissionState.CLOSED,
    ),
    (
        "create_charge",
        lambda c: c.create_charge(
            "S01-1111111-2222222",
            USD,
            capture_now=True,
            can_handle_pending_authorization=True,
            charge_initiator=ChargeInitiator.CITU,
            channel=Channel.WEB,
            merchant_reference_id="order-42",
            idempotency_key=KEY,
            soft_descriptor="SHOP",
        ),
        "POST",
        "/charges",
        {
            "chargePermissionId": "S01-1111111-2222222",
            "chargeAmount": {"amount": "12.50", "currencyCode": "USD"},
            "captureNow": True,
            "canHandlePendingAuthorization": True,
            "chargeInitiator": "CITU",
            "channel": "Web",
            "merchantMetadata": {"merchantReferenceId": "order-42"},
            "softDescriptor": "SHOP",
        },
        201,
        CHARGE,
        lambda r: isinstance(r, Charge) and r.state is ChargeState.AUTHORIZED,
    ),
    (
        "get_charge",
        lambda c: c.get_charge("S01-1111111-2222222-C000001"),
        "GET",
        "/charges/S01-1111111-2222222-C000001",
        None,
        200,
        CHARGE,
        lambda r: r.charge_id == "S01-1111111-2222222-C000001",
    ),
    (
        "capture_charge",
        lambda c: c.capture_charge("C1", Price.of("5", "EUR"), "SHOP", idempotency_key=KEY),
        "POST",
        "/charges/C1/capture",
        {"captureAmount": {"amount": "5.00", "currencyCode": "EUR"}, "softDescriptor": "SHOP"},
        200,
        {**CHARGE, "statusDetails": {"state": "Captured"}},
        lambda r: r.state is ChargeState.CAPTURED,
    ),
    (
        "cancel_charge",
        lambda c: c.cancel_charge("C1", "Out of stock"),
        "DELETE",
        "/charges/C1/cancel",
        {"cancellationReason": "Out of stock"},
        200,
        {**CHARGE, "statusDetails": {"state": "Canceled"}},
        lambda r: r.state is ChargeState.CANCELED,
    ),
    (
        "create_refund",
        lambda c: c.create_refund("C1", Price.of(1000, "JPY"), idempotency_key=KEY),
        "POST",
        "/refunds",
        {"chargeId": "C1", "refundAmount": {"amount": "1000", "currencyCode": "JPY"}},
        201,
        REFUND,
        lambda r: isinstance(r, Refund) and r.state is RefundState.REFUND_INITIATED,
    ),
    (
        "get_refund",
        lambda c: c.get_refund("S01-1111111-2222222-R000001"),
        "GET",
        "/refunds/S01-1111111-2222222-R000001",
        None,
        200,
        REFUND,
        lambda r: r.refund_id == "S01-1111111-2222222-R000001",
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body", "status", "answer", "check"),
    OPERATIONS,
    ids=[o[0] for o in OPERATIONS],
)
def test_operation_sends_a_signed_request_and_returns_the_model(  # noqa: PLR0917
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    name: str,
    call: Callable[[AmazonPayClient], Any],
    method: str,
    path: str,
    body: Any,
    status: int,
    answer: Any,
    check: Callable[[Any], bool],
) -> None:
    fake_amazon.route(method, API + path, (status, answer, {"x-amz-pay-request-id": "RID-1"}))
    result = call(make_client())
    assert check(result)

    [sent] = fake_amazon.received  # its signature verified in FakeAmazon.verify
    assert sent.method == method
    assert sent.path == "/sandbox/v2" + path
    assert sent.json == body
    headers = sent.headers
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["x-amz-pay-date"] == "20261129T100000Z"
    assert headers["x-amz-pay-host"] == "pay-api.amazon.com"
    assert headers["x-amz-pay-region"] == "na"
    assert headers["user-agent"].startswith("amazonpay-flask/")
    assert sent.authorization.public_key_id == "AKEYID123"
    assert sent.authorization.algorithm is signing.Algorithm.PSS_V2
    if method == "POST":
        assert list(sent.authorization.signed_headers) == SIGNED_POST
        assert len(headers["x-amz-pay-idempotency-key"]) == 32
        int(headers["x-amz-pay-idempotency-key"], 16)  # uuid4 hex, or the caller's KEY
    else:
        assert list(sent.authorization.signed_headers) == SIGNED_GET
        assert "x-amz-pay-idempotency-key" not in headers
    if body is None:
        assert sent.body == b""


def test_posts_get_fresh_keys_unless_given(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("POST", API + "/checkoutSessions", (201, session_json(), {}))
    client = make_client()
    client.create_checkout_session({"storeId": "amzn1.x"})
    client.create_checkout_session({"storeId": "amzn1.x"})
    client.create_checkout_session({"storeId": "amzn1.x"}, idempotency_key="order-42_try-1")
    keys = [r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received]
    assert keys[0] != keys[1]
    assert keys[2] == "order-42_try-1"


@pytest.mark.parametrize("key", ["", "a" * 33, "has space", "dot.ted", "ümlaut", "a/b"])
def test_invalid_idempotency_key_is_rejected_before_sending(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], key: str
) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        make_client().complete_checkout_session(SESSION_ID, USD, idempotency_key=key)
    assert fake_amazon.received == []


def test_idempotency_key_of_32_chars_is_accepted(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("POST", API + "/refunds", (201, REFUND, {}))
    make_client().create_refund("C1", USD, idempotency_key="A-_" + "z" * 29)
    assert fake_amazon.received[0].headers["x-amz-pay-idempotency-key"] == "A-_" + "z" * 29


@pytest.mark.parametrize(
    "seed", [SESSION_ID, SESSION_ID.upper(), SESSION_ID.replace("-", ""), f"{{{SESSION_ID}}}"]
)
def test_idempotency_key_for_uuid_is_its_hex(seed: str) -> None:
    assert idempotency_key_for(seed) == "4d1a5e0a1b2c4d3e8f90123456789abc"


@pytest.mark.parametrize("seed", ["order-42", "", "S01-1234567-1234567", "ü" * 100])
def test_idempotency_key_for_other_seeds_is_a_sha256_prefix(seed: str) -> None:
    key = idempotency_key_for(seed)
    assert key == hashlib.sha256(seed.encode()).hexdigest()[:32]
    assert key == idempotency_key_for(seed)
    assert idempotency_key_for(seed + "x") != key


def test_complete_with_idempotency_key_for_session_is_stable(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route(
        "POST", f"{API}/checkoutSessions/{SESSION_ID}/complete", (200, session_json(), {})
    )
    client = make_client()
    for _ in range(2):
        client.complete_checkout_session(
            SESSION_ID, USD, idempotency_key=idempotency_key_for(SESSION_ID)
        )
    keys = {r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received}
    assert keys == {uuid.UUID(SESSION_ID).hex}


@pytest.mark.parametrize("bad_id", ["", ".", ".."])
def test_empty_or_dot_ids_are_rejected(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], bad_id: str
) -> None:
    with pytest.raises(ValueError, match="non-empty id"):
        make_client().get_checkout_session(bad_id)
    assert fake_amazon.received == []


def test_ids_are_escaped_into_one_path_segment(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("GET", API + "/charges/a%2F..%2Fb%3Fx", (200, CHARGE, {}))
    make_client().get_charge("a/../b?x")
    assert fake_amazon.received[0].path == "/sandbox/v2/charges/a%2F..%2Fb%3Fx"


# -- money-moving operations (sections 5.1, 6 and 7) -----------------------------------------

PERMISSION_ID = "S01-1111111-2222222"


def create_charge(client: AmazonPayClient, **overrides: Any) -> Charge:
    options: dict[str, Any] = {
        "capture_now": False,
        "can_handle_pending_authorization": False,
        "charge_initiator": ChargeInitiator.MITU,
        "channel": Channel.WEB,
        "merchant_reference_id": None,
        "idempotency_key": KEY,
    }
    options.update(overrides)
    amount = options.pop("charge_amount", USD)
    return client.create_charge(PERMISSION_ID, amount, **options)


@pytest.mark.parametrize(
    ("overrides", "wire"),
    [
        (
            {},
            b'{"chargePermissionId":"S01-1111111-2222222",'
            b'"chargeAmount":{"amount":"12.50","currencyCode":"USD"},'
            b'"captureNow":false,"canHandlePendingAuthorization":false,'
            b'"chargeInitiator":"MITU","channel":"Web"}',
        ),
        (
            {
                "capture_now": True,
                "can_handle_pending_authorization": True,
                "charge_initiator": ChargeInitiator.CITU,
                "merchant_reference_id": "order-42",
                "soft_descriptor": "Café Shop",
            },
            b'{"chargePermissionId":"S01-1111111-2222222",'
            b'"chargeAmount":{"amount":"12.50","currencyCode":"USD"},'
            b'"captureNow":true,"canHandlePendingAuthorization":true,'
            b'"chargeInitiator":"CITU","channel":"Web",'
            b'"merchantMetadata":{"merchantReferenceId":"order-42"},'
            b'"softDescriptor":"Caf\xc3\xa9 Shop"}',
        ),
        (
            {
                "charge_amount": Price.of(1000, "JPY"),
                "charge_initiator": "MITR",  # Amazon's own string works as well as the member
                "channel": Channel.POINT_OF_SALE,
            },
            b'{"chargePermissionId":"S01-1111111-2222222",'
            b'"chargeAmount":{"amount":"1000","currencyCode":"JPY"},'
            b'"captureNow":false,"canHandlePendingAuthorization":false,'
            b'"chargeInitiator":"MITR","channel":"PointOfSale"}',
        ),
    ],
    ids=["minimal", "all-fields", "jpy-point-of-sale"],
)
def test_create_charge_sends_exactly_this_body_with_the_callers_key(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    overrides: dict[str, Any],
    wire: bytes,
) -> None:
    fake_amazon.route("POST", f"{API}/charges", (201, CHARGE, {}))
    charge = create_charge(make_client(), **overrides)
    assert charge.state is ChargeState.AUTHORIZED
    [sent] = fake_amazon.received  # signature verified over these exact bytes
    assert sent.body == wire
    assert sent.headers["x-amz-pay-idempotency-key"] == KEY
    assert "x-amz-pay-idempotency-key" in sent.authorization.signed_headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"charge_initiator": "XYZ"}, ValueError),
        ({"channel": "web"}, ValueError),  # Amazon's values are case-sensitive
        ({"idempotency_key": "not a key!"}, ValueError),
        ({"idempotency_key": None}, ValueError),
    ],
)
def test_create_charge_refuses_bad_arguments_before_sending(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    overrides: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        create_charge(make_client(), **overrides)
    assert fake_amazon.received == []


def test_create_charge_needs_an_idempotency_key(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    with pytest.raises(TypeError, match="idempotency_key"):
        make_client().create_charge(
            PERMISSION_ID,
            USD,
            capture_now=False,
            can_handle_pending_authorization=False,
            charge_initiator=ChargeInitiator.MITU,
            channel=Channel.WEB,
            merchant_reference_id=None,
        )
    assert fake_amazon.received == []


def test_create_charge_with_a_raw_payload_still_works_but_warns(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("POST", f"{API}/charges", (201, CHARGE, {}))
    payload = {"chargePermissionId": "P", "chargeAmount": {"amount": "1.00", "currencyCode": "USD"}}
    with pytest.warns(DeprecationWarning, match="create_charge"):
        charge = make_client().create_charge(payload)
    assert charge.charge_id == CHARGE["chargeId"]
    [sent] = fake_amazon.received
    assert sent.json == payload
    int(sent.headers["x-amz-pay-idempotency-key"], 16)  # a fresh key, as before


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda c: c.capture_charge("C1", USD), "/charges/C1/capture"),
        (lambda c: c.create_refund("C1", USD), "/refunds"),
    ],
    ids=["capture_charge", "create_refund"],
)
def test_capture_and_refund_without_a_key_warn_and_still_send_one(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    call: Callable[[AmazonPayClient], Any],
    path: str,
) -> None:
    fake_amazon.route("POST", API + path, (201, {**CHARGE, **REFUND}, {}))
    with pytest.warns(DeprecationWarning, match="idempotency key"):
        call(make_client())
    [sent] = fake_amazon.received
    assert len(sent.headers["x-amz-pay-idempotency-key"]) == 32


# (operation, call, method, path, status, reasonCode, class)
MONEY_ERRORS: list[tuple[str, Callable[[AmazonPayClient], Any], str, str, int, str, type]] = [
    *[
        ("create_charge", create_charge, "POST", "/charges", 400, code.value, errors.DeclinedError)
        for code in errors.DeclineCode
    ],
    (
        "create_charge",
        create_charge,
        "POST",
        "/charges",
        500,
        "ProcessingFailure",
        errors.DeclinedError,
    ),
    (
        "create_charge",
        create_charge,
        "POST",
        "/charges",
        422,
        "InvalidChargePermissionStatus",
        errors.InvalidChargePermissionStatus,
    ),
    (
        "create_charge",
        create_charge,
        "POST",
        "/charges",
        400,
        "DuplicateIdempotencyKey",
        errors.DuplicateIdempotencyKey,
    ),
    (
        "create_charge",
        create_charge,
        "POST",
        "/charges",
        400,
        "TransactionAmountExceeded",
        errors.TransactionAmountExceeded,
    ),
    (
        "capture_charge",
        lambda c: c.capture_charge("C1", USD, idempotency_key=KEY),
        "POST",
        "/charges/C1/capture",
        422,
        "InvalidChargeStatus",
        errors.InvalidChargeStatus,
    ),
    (
        "capture_charge",
        lambda c: c.capture_charge("C1", USD, idempotency_key=KEY),
        "POST",
        "/charges/C1/capture",
        400,
        "TransactionAmountExceeded",
        errors.TransactionAmountExceeded,
    ),
    (
        "capture_charge",
        lambda c: c.capture_charge("C1", USD, idempotency_key=KEY),
        "POST",
        "/charges/C1/capture",
        400,
        "DuplicateIdempotencyKey",
        errors.DuplicateIdempotencyKey,
    ),
    (
        "create_refund",
        lambda c: c.create_refund("C1", USD, idempotency_key=KEY),
        "POST",
        "/refunds",
        400,
        "TransactionAmountExceeded",
        errors.TransactionAmountExceeded,
    ),
    (
        "create_refund",
        lambda c: c.create_refund("C1", USD, idempotency_key=KEY),
        "POST",
        "/refunds",
        422,
        "InvalidChargeStatus",
        errors.InvalidChargeStatus,
    ),
    (
        "create_refund",
        lambda c: c.create_refund("C1", USD, idempotency_key=KEY),
        "POST",
        "/refunds",
        400,
        "DuplicateIdempotencyKey",
        errors.DuplicateIdempotencyKey,
    ),
    (
        "cancel_charge",
        lambda c: c.cancel_charge("C1", "Out of stock"),
        "DELETE",
        "/charges/C1/cancel",
        422,
        "InvalidChargeStatus",
        errors.InvalidChargeStatus,
    ),
    (
        "cancel_charge",
        lambda c: c.cancel_charge("C1", "Out of stock"),
        "DELETE",
        "/charges/C1/cancel",
        404,
        "ResourceNotFound",
        errors.NotFoundError,
    ),
    (
        "close_charge_permission",
        lambda c: c.close_charge_permission(PERMISSION_ID, "Removed by the buyer"),
        "DELETE",
        f"/chargePermissions/{PERMISSION_ID}/close",
        422,
        "InvalidChargePermissionStatus",
        errors.InvalidChargePermissionStatus,
    ),
    (
        "close_charge_permission",
        lambda c: c.close_charge_permission(PERMISSION_ID, "Removed by the buyer"),
        "DELETE",
        f"/chargePermissions/{PERMISSION_ID}/close",
        404,
        "ResourceNotFound",
        errors.NotFoundError,
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "status", "reason", "expected"),
    MONEY_ERRORS,
    ids=[f"{e[0]}-{e[4]}-{e[5]}" for e in MONEY_ERRORS],
)
def test_money_moving_errors_map_to_their_classes(  # noqa: PLR0917
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    name: str,
    call: Callable[[AmazonPayClient], Any],
    method: str,
    path: str,
    status: int,
    reason: str,
    expected: type[errors.APIError],
) -> None:
    body = {"reasonCode": reason, "message": f"{reason} happened"}
    fake_amazon.route(method, API + path, (status, body, {"x-amz-pay-request-id": "rid-5"}))
    with pytest.raises(expected) as info:
        call(make_client(retry=RetryPolicy(max_attempts=1)))
    error = info.value
    assert type(error) is expected
    assert (error.status, error.reason_code, error.request_id) == (status, reason, "rid-5")
    if isinstance(error, errors.DeclinedError):
        assert error.decline_code is errors.DeclineCode(reason)
    [sent] = fake_amazon.received
    assert sent.method == method


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "url", "host", "region"),
    [
        ({}, "https://pay-api.amazon.com/sandbox/v2", "pay-api.amazon.com", "na"),
        ({"region": "US"}, "https://pay-api.amazon.com/sandbox/v2", "pay-api.amazon.com", "na"),
        ({"region": "eu"}, "https://pay-api.amazon.eu/sandbox/v2", "pay-api.amazon.eu", "eu"),
        ({"region": "De"}, "https://pay-api.amazon.eu/sandbox/v2", "pay-api.amazon.eu", "eu"),
        ({"region": "uk"}, "https://pay-api.amazon.eu/sandbox/v2", "pay-api.amazon.eu", "eu"),
        ({"region": "JP"}, "https://pay-api.amazon.jp/sandbox/v2", "pay-api.amazon.jp", "jp"),
        ({"sandbox": False}, "https://pay-api.amazon.com/live/v2", "pay-api.amazon.com", "na"),
        (
            {"public_key_id": "SANDBOX-AFVX7ULWSGBZ5535PCUQOY7B", "sandbox": False},
            "https://pay-api.amazon.com/v2",
            "pay-api.amazon.com",
            "na",
        ),
        (
            {"public_key_id": "live-XYZ", "region": "jp"},
            "https://pay-api.amazon.jp/v2",
            "pay-api.amazon.jp",
            "jp",
        ),
        (
            {"public_key_id": "LIVEKEY", "sandbox": True},
            "https://pay-api.amazon.com/v2",
            "pay-api.amazon.com",
            "na",
        ),
        (
            {"endpoint": "http://127.0.0.1:8765", "region": "eu"},
            "http://127.0.0.1:8765/sandbox/v2",
            "127.0.0.1",
            "eu",
        ),
        (
            {"endpoint": "https://sim.example.test/", "sandbox": False},
            "https://sim.example.test/live/v2",
            "sim.example.test",
            "na",
        ),
        (
            {"endpoint": "HTTP://LocalHost:5000", "public_key_id": "SANDBOX-K"},
            "http://localhost:5000/v2",
            "localhost",
            "na",
        ),
    ],
)
def test_url_building(  # noqa: PLR0917
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    options: dict[str, Any],
    url: str,
    host: str,
    region: str,
) -> None:
    client = make_client(**options)
    assert client.base_url == url
    fake_amazon.route("GET", f"{url}/checkoutSessions/{SESSION_ID}", (200, session_json(), {}))
    client.get_checkout_session(SESSION_ID)
    [sent] = fake_amazon.received
    assert sent.url == f"{url}/checkoutSessions/{SESSION_ID}"
    assert sent.headers["x-amz-pay-host"] == host
    assert sent.headers["x-amz-pay-region"] == region
    assert client.region == region


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://pay.example",
        "http://",
        "pay-api.amazon.com",
        "http://host/path",
        "http://host:99999",
        "http://host:port",
        "http://host?q=1",
        "http://host#frag",
        "http://user:pw@host",
        "",
    ],
)
def test_bad_endpoint_is_a_configuration_error(
    make_client: Callable[..., AmazonPayClient], endpoint: str
) -> None:
    with pytest.raises(errors.ConfigurationError, match="endpoint"):
        make_client(endpoint=endpoint)


@pytest.mark.parametrize("region", ["", "us-east-1", "fe", "europe"])
def test_unknown_region_is_a_configuration_error(
    make_client: Callable[..., AmazonPayClient], region: str
) -> None:
    with pytest.raises(errors.ConfigurationError, match="region"):
        make_client(region=region)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"algorithm": "AMZN-PAY-RSASSA-PKCS1"}, "algorithm"),
        ({"public_key_id": ""}, "public_key_id"),
        ({"public_key_id": "A B"}, "public_key_id"),
        ({"public_key_id": "A,B"}, "public_key_id"),
        ({"connect_timeout": 0}, "timeout"),
    ],
)
def test_bad_configuration(
    make_client: Callable[..., AmazonPayClient], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(errors.ConfigurationError, match=match):
        make_client(**options)


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("na", "https://static-na.payments-amazon.com/checkout.js"),
        ("us", "https://static-na.payments-amazon.com/checkout.js"),
        ("EU", "https://static-eu.payments-amazon.com/checkout.js"),
        ("uk", "https://static-eu.payments-amazon.com/checkout.js"),
        ("de", "https://static-eu.payments-amazon.com/checkout.js"),
        ("jp", "https://static-fe.payments-amazon.com/checkout.js"),
    ],
)
def test_checkout_js_url(region: str, url: str) -> None:
    assert checkout_js_url(region) == url


def test_checkout_js_url_unknown_region() -> None:
    with pytest.raises(errors.ConfigurationError, match="region"):
        checkout_js_url("mars")


# -- keys, algorithm, button -----------------------------------------------------------------


def test_pem_key_is_parsed_once(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    private_pem: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, password: bytes | None = None, **kw: Any) -> Any:
        calls.append(1)
        return real(data, password, **kw)

    # Patching the third-party boundary (cryptography), not our own code.
    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    fake_amazon.route("GET", f"{API}/checkoutSessions/{SESSION_ID}", (200, session_json(), {}))
    fake_amazon.route(
        "POST", f"{API}/checkoutSessions/{SESSION_ID}/complete", (200, session_json(), {})
    )
    client = make_client(private_key=private_pem)
    for _ in range(5):
        client.get_checkout_session(SESSION_ID)
        client.complete_checkout_session(SESSION_ID, USD)
    assert len(fake_amazon.received) == 10  # all verified with the matching public key
    assert calls == [1]


@pytest.mark.parametrize(
    "bad_key",
    [
        b"",
        b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
        b"secret-key-material",
    ],
)
def test_bad_key_is_a_configuration_error_without_key_content(
    make_client: Callable[..., AmazonPayClient], bad_key: bytes
) -> None:
    with pytest.raises(errors.ConfigurationError, match="private_key") as info:
        make_client(private_key=bad_key)
    assert "c2VjcmV0" not in str(info.value)
    assert "secret-key-material" not in str(info.value)
    assert info.value.__cause__ is None


def test_non_rsa_key_is_a_configuration_error(make_client: Callable[..., AmazonPayClient]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(errors.ConfigurationError, match="private_key"):
        make_client(private_key=pem)


@pytest.mark.parametrize("algorithm", ["AMZN-PAY-RSASSA-PSS", signing.Algorithm.PSS])
def test_original_algorithm_signs_with_salt_20(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    public_key: rsa.RSAPublicKey,
    algorithm: Any,
) -> None:
    fake_amazon.route("GET", f"{API}/charges/C1", (200, CHARGE, {}))
    client = make_client(algorithm=algorithm)
    assert client.algorithm is signing.Algorithm.PSS
    client.get_charge("C1")
    assert fake_amazon.received[0].authorization.algorithm is signing.Algorithm.PSS


@pytest.mark.parametrize("algorithm", list(signing.Algorithm))
def test_sign_button_payload_verifies(
    make_client: Callable[..., AmazonPayClient],
    public_key: rsa.RSAPublicKey,
    algorithm: signing.Algorithm,
) -> None:
    payload = json.dumps({"storeId": "amzn1.x", "webCheckoutDetails": {}})
    signature = make_client(algorithm=algorithm).sign_button_payload(payload)
    assert signing.verify_button_signature(public_key, payload, signature, algorithm)
    assert not signing.verify_button_signature(public_key, payload + " ", signature, algorithm)


def test_public_properties(make_client: Callable[..., AmazonPayClient]) -> None:
    client = make_client(public_key_id="SANDBOX-XYZ")
    assert client.public_key_id == "SANDBOX-XYZ"
    assert client.algorithm is signing.Algorithm.PSS_V2


def test_payload_decimal_and_non_ascii_are_signed_as_sent(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("PATCH", f"{API}/checkoutSessions/{SESSION_ID}", (200, session_json(), {}))
    make_client().update_checkout_session(
        SESSION_ID, {"merchantMetadata": {"merchantStoreName": "Café Ü"}, "x": Decimal("1.50")}
    )
    sent = fake_amazon.received[0]
    assert sent.json == {"merchantMetadata": {"merchantStoreName": "Café Ü"}, "x": "1.50"}
    assert "Café".encode() in sent.body


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (400, "InvalidParameterValue", errors.InvalidRequestError),
        (400, "DuplicateIdempotencyKey", errors.DuplicateIdempotencyKey),
        (400, "CheckoutSessionCanceled", errors.CheckoutSessionCanceled),
        (401, "UnauthorizedAccess", errors.AuthenticationError),
        (403, "InvalidRequestSignature", errors.AuthenticationError),
        (403, "InvalidAccountStatus", errors.AuthenticationError),
        (404, "ResourceNotFound", errors.NotFoundError),
        (405, "UnsupportedOperation", errors.InvalidRequestError),
        (409, "AmountMismatch", errors.AmountMismatch),
        (422, "InvalidCheckoutSessionStatus", errors.InvalidCheckoutSessionStatus),
        (422, "CheckoutSessionCanceled", errors.CheckoutSessionCanceled),
        (429, "TooManyRequests", errors.RateLimitError),
        (500, "InternalServerError", errors.ServiceError),
        (503, "ServiceUnavailable", errors.ServiceError),
    ],
)
def test_error_status_and_reason_map_to_exceptions(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    status: int,
    reason: str,
    expected: type[errors.APIError],
) -> None:
    body = {"reasonCode": reason, "message": f"{reason} happened"}
    fake_amazon.route(
        "POST",
        f"{API}/checkoutSessions/{SESSION_ID}/complete",
        (status, body, {"x-amz-pay-request-id": "req-77"}),
    )
    client = make_client(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(expected) as info:
        client.complete_checkout_session(SESSION_ID, USD)
    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.reason_code == reason
    assert error.message == f"{reason} happened"
    assert error.request_id == "req-77"
    assert "req-77" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, "<html>Bad Request</html>", errors.InvalidRequestError),
        (403, "", errors.AuthenticationError),
        (404, "null", errors.NotFoundError),
        (502, "<html>Bad Gateway</html>", errors.ServiceError),
        (409, '["AmountMismatch"]', errors.ConflictError),
        (400, '{"reasonCode": 7}', errors.InvalidRequestError),
    ],
)
def test_non_json_error_body_still_gives_typed_error(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    status: int,
    body: str,
    expected: type[errors.APIError],
) -> None:
    fake_amazon.route("GET", f"{API}/charges/C1", (status, body, {"x-amz-pay-request-id": "r-9"}))
    client = make_client(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(expected) as info:
        client.get_charge("C1")
    assert info.value.reason_code is None
    assert info.value.status == status
    assert info.value.request_id == "r-9"


@pytest.mark.parametrize("body", ["", "<html>ok</html>", "[1, 2]", '"text"', "{bad json"])
def test_success_status_with_non_json_body_is_a_service_error(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], body: str
) -> None:
    fake_amazon.route("GET", f"{API}/charges/C1", (200, body, {"x-amz-pay-request-id": "r-1"}))
    with pytest.raises(errors.ServiceError) as info:
        make_client().get_charge("C1")
    assert info.value.status == 200
    assert info.value.reason_code is None
    assert info.value.request_id == "r-1"
    assert len(fake_amazon.received) == 1  # a 2xx is never retried


# -- logging, threads, isolation --------------------------------------------------------------


def test_logs_carry_operation_status_and_request_id_but_no_secrets(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    caplog: pytest.LogCaptureFixture,
    private_pem: bytes,
) -> None:
    fake_amazon.route(
        "POST",
        f"{API}/checkoutSessions/{SESSION_ID}/complete",
        (503, {"reasonCode": "ServiceUnavailable"}, {"x-amz-pay-request-id": "rid-a"}),
        (
            200,
            session_json(buyer={"email": "buyer@example.com"}),
            {"x-amz-pay-request-id": "rid-b"},
        ),
    )
    caplog.set_level(logging.DEBUG)
    make_client(private_key=private_pem).complete_checkout_session(SESSION_ID, USD)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "complete_checkout_session" in text
    assert "rid-a" in text
    assert "rid-b" in text
    assert "status=503" in text
    assert "status=200" in text
    assert "attempt=2" in text
    assert "elapsed_ms=" in text
    for sent in fake_amazon.received:
        assert sent.headers["authorization"] not in text
        assert sent.authorization.signature not in text
    assert "Signature=" not in text
    assert "PublicKeyId" not in text
    assert "BEGIN" not in text
    assert "buyer@example.com" not in text
    assert "12.50" not in text
    assert {r.name for r in caplog.records if "complete_checkout_session" in r.getMessage()} == {
        "amazonpay"
    }


def test_concurrent_calls_from_threads_are_each_signed_correctly(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("POST", f"{API}/charges", (201, CHARGE, {}))
    client = make_client()
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(10):
                client.create_charge(
                    "P",
                    USD,
                    capture_now=True,
                    can_handle_pending_authorization=False,
                    charge_initiator=ChargeInitiator.MITU,
                    channel=Channel.WEB,
                    merchant_reference_id=f"order-{worker}-{i}",
                    idempotency_key=f"order-{worker}-{i}",
                )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(fake_amazon.received) == 80
    # Each request is whole: its key and its body belong to the same call.
    pairs = {
        (r.headers["x-amz-pay-idempotency-key"], r.json["merchantMetadata"]["merchantReferenceId"])
        for r in fake_amazon.received
    }
    assert len(pairs) == 80
    assert all(key == reference for key, reference in pairs)


def test_client_closes_its_own_session_only(
    make_client: Callable[..., AmazonPayClient],
) -> None:
    import requests

    closed: list[str] = []

    class Tracking(requests.Session):
        def close(self) -> None:
            closed.append("caller's")
            super().close()

    own = make_client()
    own.close()
    with make_client(session=Tracking()) as client:
        assert client.public_key_id == "AKEYID123"
    assert closed == []


def test_importing_the_client_does_not_load_flask() -> None:
    code = "import amazonpay.client, sys; assert 'flask' not in sys.modules, 'flask was imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_responses_mock_is_active(fake_amazon: FakeAmazon) -> None:
    # Guard for the fixture itself: an unrouted URL must not reach the network.
    import requests

    with pytest.raises(requests.ConnectionError):
        requests.get("https://pay-api.amazon.com/unrouted", timeout=1)
    assert isinstance(fake_amazon.rsps, responses.RequestsMock)


def test_timeouts_and_environment_proxy_reach_the_transport(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = make_client(connect_timeout=1.5, read_timeout=7.0)  # environment read here, once
    fake_amazon.route("GET", f"{API}/charges/C1", (200, CHARGE, {}))
    fake_amazon.route("POST", f"{API}/charges/C1/capture", (200, CHARGE, {}))
    client.get_charge("C1")
    client.capture_charge("C1", USD, idempotency_key=KEY)
    for call in fake_amazon.rsps.calls:
        kwargs = call.request.req_kwargs
        assert kwargs["timeout"] == (1.5, 7.0)
        assert kwargs["proxies"]["https"] == "http://proxy.invalid:3128"


def test_callers_session_default_headers_are_sent_unsigned(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    import requests

    session = requests.Session()
    session.headers["X-Trace"] = "trace-1"
    fake_amazon.route("GET", f"{API}/charges/C1", (200, CHARGE, {}))
    make_client(session=session).get_charge("C1")
    sent = fake_amazon.received[0]
    assert sent.headers["x-trace"] == "trace-1"
    assert sent.headers["accept"] == "application/json"
    assert "x-trace" not in sent.authorization.signed_headers


def test_sequential_calls_reuse_one_pooled_connection(private_key: rsa.RSAPrivateKey) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connections: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(self.client_address)

        def do_GET(self) -> None:
            body = json.dumps(CHARGE).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with AmazonPayClient(
            public_key_id="K", private_key=private_key, endpoint=f"http://127.0.0.1:{port}"
        ) as client:
            for _ in range(10):
                assert client.get_charge("C1").state == "Authorized"
    finally:
        server.shutdown()
        server.server_close()
    assert len(connections) == 1
