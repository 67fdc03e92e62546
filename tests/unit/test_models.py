"""Parsing Amazon's JSON into the models: full answers, sparse ones, odd values, unknown states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest

from amazonpay.errors import DeclineCode
from amazonpay.models import (
    Buyer,
    Charge,
    ChargeInitiator,
    ChargePermission,
    ChargePermissionState,
    ChargeState,
    CheckoutSession,
    CheckoutSessionState,
    Limits,
    Price,
    Refund,
    RefundState,
    StatusReason,
)

STAMP = datetime(2019, 7, 14, 15, 53, 0, tzinfo=UTC)

# A Get Charge Permission answer shaped like Amazon's reference sample (section 6).
PERMISSION: dict[str, Any] = {
    "chargePermissionId": "S01-5105180-3221187",
    "chargePermissionReferenceId": None,
    "chargePermissionType": "PaymentMethodOnFile",
    "buyer": {
        "buyerId": "amzn1.account.AH2PLB5ZLHE3QIT5XZHM2ADTIH2Q",
        "name": "John Example",
        "email": "johnexample@amazon.com",
        "phoneNumber": "800-000-0000",
        "primeMembershipTypes": None,
    },
    "releaseEnvironment": "Sandbox",
    "paymentPreferences": [{"paymentDescriptor": "Visa ****1111 (Amazon Pay)"}],
    "statusDetails": {
        "state": "NonChargeable",
        "reasons": [
            {"reasonCode": "PaymentMethodExpired", "reasonDescription": "The card expired."},
            {"reasonCode": "BillingAddressDeleted", "reasonDescription": None},
        ],
        "lastUpdatedTimestamp": "20190714T155300Z",
    },
    "creationTimestamp": "20190714T155300Z",
    "expirationTimestamp": "20200714T155300Z",
    "merchantMetadata": {"merchantReferenceId": "wallet-7", "merchantStoreName": "Shop"},
    "limits": {
        "amountLimit": {"amount": "150000.00", "currencyCode": "USD"},
        "amountBalance": {"amount": "149987.50", "currencyCode": "USD"},
    },
    "presentmentCurrency": "USD",
    "somethingAmazonAddsLater": {"x": 1},
}

CHARGE: dict[str, Any] = {
    "chargeId": "S01-5105180-3221187-C056351",
    "chargePermissionId": "S01-5105180-3221187",
    "chargeAmount": {"amount": "14.00", "currencyCode": "EUR"},
    "captureAmount": {"amount": "14.00", "currencyCode": "EUR"},
    "refundedAmount": {"amount": "5.50", "currencyCode": "EUR"},
    "convertedAmount": {"amount": "15.37", "currencyCode": "USD"},
    "conversionRate": 1.0979,
    "softDescriptor": "AMZ* Shop",
    "merchantMetadata": {"merchantReferenceId": "order-42"},
    "providerMetadata": {"providerReferenceId": None},
    "statusDetails": {
        "state": "Captured",
        "reasonCode": None,
        "reasonDescription": None,
        "lastUpdatedTimestamp": "20190714T155300Z",
    },
    "creationTimestamp": "20190714T155300Z",
    "expirationTimestamp": "20190813T155300Z",
    "releaseEnvironment": "Sandbox",
}

REFUND: dict[str, Any] = {
    "refundId": "S01-5105180-3221187-R022311",
    "chargeId": "S01-5105180-3221187-C056351",
    "refundAmount": {"amount": "5.50", "currencyCode": "EUR"},
    "softDescriptor": "AMZ* Shop",
    "creationTimestamp": "20190714T155300Z",
    "statusDetails": {
        "state": "Refunded",
        "reasonCode": None,
        "reasonDescription": None,
        "lastUpdatedTimestamp": "20190714T160400Z",
    },
    "releaseEnvironment": "Sandbox",
}


def test_charge_permission_full_answer() -> None:
    permission = ChargePermission.from_json(PERMISSION)
    assert permission.charge_permission_id == "S01-5105180-3221187"
    assert permission.state is ChargePermissionState.NON_CHARGEABLE
    assert permission.state_raw == "NonChargeable"
    assert permission.reason_code is None
    assert permission.reasons == (
        StatusReason("PaymentMethodExpired", "The card expired."),
        StatusReason("BillingAddressDeleted", None),
    )
    assert permission.payment_descriptor == "Visa ****1111 (Amazon Pay)"
    assert permission.limits == Limits(
        amount_limit=Price(Decimal("150000.00"), "USD"),
        amount_balance=Price(Decimal("149987.50"), "USD"),
    )
    assert permission.expiration_timestamp == STAMP.replace(year=2020)
    assert permission.creation_timestamp == STAMP
    assert permission.status_details.last_updated_timestamp == STAMP
    assert permission.charge_permission_type == "PaymentMethodOnFile"
    assert permission.buyer == Buyer(
        buyer_id="amzn1.account.AH2PLB5ZLHE3QIT5XZHM2ADTIH2Q",
        name="John Example",
        email="johnexample@amazon.com",
        phone_number="800-000-0000",
    )
    assert permission.merchant_reference_id == "wallet-7"
    assert permission.release_environment == "Sandbox"
    assert permission.raw is PERMISSION


def test_charge_full_answer() -> None:
    charge = Charge.from_json(CHARGE)
    assert charge.charge_id == "S01-5105180-3221187-C056351"
    assert charge.state is ChargeState.CAPTURED
    assert charge.reason_code is None
    assert charge.decline_code is None
    assert charge.charge_amount == Price.of("14.00", "EUR")
    assert charge.capture_amount == Price.of("14.00", "EUR")
    assert charge.refunded_amount == Price.of("5.50", "EUR")
    assert charge.converted_amount == Price.of("15.37", "USD")
    assert charge.conversion_rate == Decimal("1.0979")
    assert charge.expiration_timestamp == STAMP + timedelta(days=30)
    assert charge.creation_timestamp == STAMP
    assert charge.charge_permission_id == "S01-5105180-3221187"
    assert charge.merchant_reference_id == "order-42"
    assert charge.soft_descriptor == "AMZ* Shop"


def test_refund_full_answer() -> None:
    refund = Refund.from_json(REFUND)
    assert refund.refund_id == "S01-5105180-3221187-R022311"
    assert refund.state is RefundState.REFUNDED
    assert refund.reason_code is None
    assert refund.refund_amount == Price.of("5.50", "EUR")
    assert refund.charge_id == "S01-5105180-3221187-C056351"
    assert refund.creation_timestamp == STAMP
    assert refund.last_updated_timestamp == STAMP + timedelta(minutes=11)
    assert refund.soft_descriptor == "AMZ* Shop"


# (model, id field, state enum) for the tables below
MODELS: list[tuple[Any, str, type[StrEnum]]] = [
    (CheckoutSession, "checkoutSessionId", CheckoutSessionState),
    (ChargePermission, "chargePermissionId", ChargePermissionState),
    (Charge, "chargeId", ChargeState),
    (Refund, "refundId", RefundState),
]

STATES: list[tuple[Any, str, StrEnum]] = [
    (CheckoutSession, "Open", CheckoutSessionState.OPEN),
    (CheckoutSession, "Completed", CheckoutSessionState.COMPLETED),
    (CheckoutSession, "Canceled", CheckoutSessionState.CANCELED),
    (ChargePermission, "Chargeable", ChargePermissionState.CHARGEABLE),
    (ChargePermission, "NonChargeable", ChargePermissionState.NON_CHARGEABLE),
    (ChargePermission, "Closed", ChargePermissionState.CLOSED),
    (Charge, "AuthorizationInitiated", ChargeState.AUTHORIZATION_INITIATED),
    (Charge, "Authorized", ChargeState.AUTHORIZED),
    (Charge, "CaptureInitiated", ChargeState.CAPTURE_INITIATED),
    (Charge, "Captured", ChargeState.CAPTURED),
    (Charge, "Canceled", ChargeState.CANCELED),
    (Charge, "Declined", ChargeState.DECLINED),
    (Refund, "RefundInitiated", RefundState.REFUND_INITIATED),
    (Refund, "Refunded", RefundState.REFUNDED),
    (Refund, "Declined", RefundState.DECLINED),
]


@pytest.mark.parametrize(
    ("model", "raw", "member"), STATES, ids=[f"{s[0].__name__}-{s[1]}" for s in STATES]
)
def test_every_documented_state_parses_to_its_member(model: Any, raw: str, member: StrEnum) -> None:
    parsed = model.from_json({"statusDetails": {"state": raw}})
    assert parsed.state is member
    assert parsed.state == raw  # a StrEnum: callers comparing strings keep working
    assert f"{parsed.state}" == raw
    assert parsed.state_raw == raw


def test_the_state_table_covers_every_member() -> None:
    for _, _, enum in MODELS:
        listed = {member for _, _, member in STATES if isinstance(member, enum)}
        assert listed == set(enum) - {enum["UNSPECIFIED"], enum["UNKNOWN"]}


@pytest.mark.parametrize(
    "status_details",
    [
        {"state": "SomethingAmazonAddsLater", "reasonCode": "NewReason"},
        {"state": "open"},  # states are case-sensitive on the wire
        {"state": "Unknown"},
    ],
    ids=["new-state", "wrong-case", "literal-unknown"],
)
@pytest.mark.parametrize(("model", "id_field", "enum"), MODELS, ids=[m[0].__name__ for m in MODELS])
def test_a_state_we_do_not_know_is_unknown_and_keeps_the_raw_string(
    model: Any, id_field: str, enum: type[StrEnum], status_details: dict[str, Any]
) -> None:
    parsed = model.from_json({id_field: "X-1", "statusDetails": status_details})
    assert parsed.state is enum["UNKNOWN"]
    assert parsed.state  # truthy: never mistaken for a missing state
    assert parsed.state_raw == status_details["state"]


@pytest.mark.parametrize(
    "status_details",
    [{"state": None}, {"state": ""}, {}, None, "not an object"],
    ids=["null-state", "empty-state", "empty", "null", "not-object"],
)
@pytest.mark.parametrize(("model", "id_field", "enum"), MODELS, ids=[m[0].__name__ for m in MODELS])
def test_a_missing_state_is_unspecified_and_falsy(
    model: Any, id_field: str, enum: type[StrEnum], status_details: Any
) -> None:
    parsed = model.from_json({id_field: "X-1", "statusDetails": status_details})
    assert parsed.state is enum["UNSPECIFIED"]
    assert not parsed.state  # `session.state or "Open"` keeps meaning "nothing said"
    assert parsed.state == ""
    assert parsed.state_raw == ""


@pytest.mark.parametrize(("model", "id_field", "enum"), MODELS, ids=[m[0].__name__ for m in MODELS])
def test_an_empty_object_parses(model: Any, id_field: str, enum: type[StrEnum]) -> None:
    parsed = model.from_json({})
    assert getattr(parsed, _snake(id_field)) == ""
    assert parsed.state is enum["UNSPECIFIED"]
    assert parsed.reason_code is None
    assert parsed.creation_timestamp is None
    assert parsed.raw == {}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_sparse_charge_permission() -> None:
    permission = ChargePermission.from_json(
        {
            "chargePermissionId": "P",
            "statusDetails": {"state": "Chargeable", "reasons": None},
            "paymentPreferences": [None, {"paymentDescriptor": None}, {}, "junk"],
            "limits": {"amountLimit": None},
        }
    )
    assert permission.state is ChargePermissionState.CHARGEABLE
    assert permission.reasons == ()
    assert permission.payment_descriptor is None
    assert permission.limits == Limits(None, None)
    assert permission.buyer is None
    assert permission.expiration_timestamp is None
    assert permission.merchant_reference_id is None


def test_payment_descriptor_is_the_first_preference_that_has_one() -> None:
    permission = ChargePermission.from_json(
        {
            "paymentPreferences": [
                {"paymentDescriptor": ""},
                {"paymentDescriptor": "Amex ****0005"},
                {"paymentDescriptor": "Visa ****1111"},
            ]
        }
    )
    assert permission.payment_descriptor == "Amex ****0005"


def test_reasons_skip_entries_that_are_not_objects() -> None:
    permission = ChargePermission.from_json(
        {"statusDetails": {"state": "NonChargeable", "reasons": ["x", {"reasonCode": "MFAFailed"}]}}
    )
    assert permission.reasons == (StatusReason("MFAFailed", None),)


def test_sparse_charge_and_refund() -> None:
    charge = Charge.from_json({"chargeId": "C", "statusDetails": {"state": "Authorized"}})
    assert charge.state is ChargeState.AUTHORIZED
    assert charge.capture_amount is None
    assert charge.refunded_amount is None
    assert charge.converted_amount is None
    assert charge.conversion_rate is None
    assert charge.merchant_reference_id is None
    refund = Refund.from_json({"refundId": "R", "statusDetails": {"state": "RefundInitiated"}})
    assert refund.state is RefundState.REFUND_INITIATED
    assert refund.refund_amount is None
    assert refund.last_updated_timestamp is None


@pytest.mark.parametrize(
    ("status_details", "expected"),
    [
        ({"state": "Declined", "reasonCode": "SoftDeclined"}, DeclineCode.SOFT_DECLINED),
        ({"state": "Declined", "reasonCode": "HardDeclined"}, DeclineCode.HARD_DECLINED),
        ({"state": "Declined", "reasonCode": "AmazonRejected"}, DeclineCode.AMAZON_REJECTED),
        ({"state": "Declined", "reasonCode": "SomethingNew"}, None),
        ({"state": "Declined"}, None),
        ({"state": "Canceled", "reasonCode": "HardDeclined"}, None),
    ],
)
def test_charge_decline_code(status_details: dict[str, Any], expected: DeclineCode | None) -> None:
    assert Charge.from_json({"statusDetails": status_details}).decline_code is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20190714T155300Z", STAMP),
        ("2019-07-14T15:53:00Z", STAMP),
        ("2019-07-14T15:53:00.186Z", STAMP.replace(microsecond=186000)),
        ("2019-07-14T17:53:00+02:00", STAMP),
        ("2019-07-14T15:53:00", STAMP),  # no offset: Amazon's clock is UTC
        ("20190714T155300", STAMP),  # ISO 8601's basic form without the Z
        ("2019-13-40T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
        (1563119580, None),
        (None, None),
    ],
)
def test_timestamps_parse_to_aware_utc(value: Any, expected: datetime | None) -> None:
    parsed = Charge.from_json({"expirationTimestamp": value}).expiration_timestamp
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None
        assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"amount": "12.50", "currencyCode": "USD"}, Price(Decimal("12.50"), "USD")),
        ({"amount": 99, "currencyCode": "EUR"}, Price(Decimal("99"), "EUR")),
        ({"amount": 12.5, "currencyCode": "EUR"}, Price(Decimal("12.5"), "EUR")),
        ({"amount": "1000", "currencyCode": "JPY"}, Price(Decimal("1000"), "JPY")),
        ({"amount": "0.00", "currencyCode": "USD"}, Price(Decimal("0.00"), "USD")),
        ({"amount": "12.50"}, None),
        ({"amount": "12.50", "currencyCode": ""}, None),
        ({"currencyCode": "USD"}, None),
        ({"amount": None, "currencyCode": "USD"}, None),
        ({"amount": "twelve", "currencyCode": "USD"}, None),
        ({"amount": "NaN", "currencyCode": "USD"}, None),
        ({"amount": "Infinity", "currencyCode": "USD"}, None),
        ({"amount": True, "currencyCode": "USD"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_price_from_json(data: Any, expected: Price | None) -> None:
    assert Price.from_json(data) == expected


@pytest.mark.parametrize(
    ("price", "wire"),
    [
        (Price.of("12.5", "USD"), {"amount": "12.50", "currencyCode": "USD"}),
        (Price.of(14, "EUR"), {"amount": "14.00", "currencyCode": "EUR"}),
        (Price.of("1000", "JPY"), {"amount": "1000", "currencyCode": "JPY"}),
    ],
)
def test_price_to_json(price: Price, wire: dict[str, str]) -> None:
    assert price.to_json() == wire


def test_checkout_session_timestamps_and_reason() -> None:
    session = CheckoutSession.from_json(
        {
            "checkoutSessionId": "S",
            "statusDetails": {"state": "Canceled", "reasonCode": "BuyerCanceled"},
            "creationTimestamp": "20190714T155300Z",
            "expirationTimestamp": "20190715T155300Z",
        }
    )
    assert session.state is CheckoutSessionState.CANCELED
    assert session.reason_code == "BuyerCanceled"
    assert session.creation_timestamp == STAMP
    assert session.expiration_timestamp == STAMP + timedelta(hours=24)


def test_request_vocabularies_are_amazons_strings() -> None:
    assert [c.value for c in ChargeInitiator] == ["CITU", "MITU", "CITR", "MITR"]
