"""Create Refund (docs sections 4 and 5.1): refunds settle later, may be declined, and their
total never exceeds what was captured."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.simulator.conftest import Api, create_charge


def refund(api: Api, charge_id: str, amount: str, key: str) -> requests.Response:
    return api.call(
        "POST",
        "/refunds",
        {"chargeId": charge_id, "refundAmount": {"amount": amount, "currencyCode": "USD"}},
        idempotency_key=key,
    )


def refunded(api: Api, charge_id: str) -> str:
    amount: str = api.call("GET", f"/charges/{charge_id}").json()["refundedAmount"]["amount"]
    return amount


def refund_state(api: Api, refund_id: str) -> tuple[str, str | None]:
    details = api.call("GET", f"/refunds/{refund_id}").json()["statusDetails"]
    return details["state"], details["reasonCode"]


@pytest.fixture
def captured(api: Api, wallet: str) -> str:
    """A charge of 14.00 USD on a saved wallet, captured in full."""
    response = create_charge(api, wallet, captureNow=True)
    assert response.json()["statusDetails"]["state"] == "Captured", response.text
    charge_id: str = response.json()["chargeId"]
    return charge_id


def test_a_refund_settles_five_seconds_later(api: Api, captured: str) -> None:
    response = refund(api, captured, "4.00", "r1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["statusDetails"]["state"] == "RefundInitiated"
    assert body["refundAmount"] == {"amount": "4.00", "currencyCode": "USD"}
    assert body["chargeId"] == captured
    api.control("clock", {"advance_seconds": 4})
    assert refund_state(api, body["refundId"]) == ("RefundInitiated", None)
    api.control("clock", {"advance_seconds": 2})
    assert refund_state(api, body["refundId"]) == ("Refunded", None)
    assert refunded(api, captured) == "4.00"


@pytest.mark.parametrize(
    ("amounts", "statuses"),
    [
        (["14.00"], [201]),
        (["10.00", "4.00"], [201, 201]),
        (["10.00", "4.01"], [201, 400]),
        (["14.01"], [400]),
        (["5.00", "5.00", "5.00"], [201, 201, 400]),
    ],
    ids=["all", "in-two", "one-cent-over", "over", "third-over"],
)
def test_refunds_add_up_to_at_most_the_captured_amount(
    api: Api, captured: str, amounts: list[str], statuses: list[int]
) -> None:
    got = [refund(api, captured, amount, f"r{i}") for i, amount in enumerate(amounts)]
    assert [r.status_code for r in got] == statuses
    for response in got:
        if response.status_code == 400:
            assert response.json()["reasonCode"] == "TransactionAmountExceeded"


def test_the_limit_is_what_a_partial_capture_took(api: Api, wallet: str) -> None:
    charge_id = create_charge(api, wallet).json()["chargeId"]
    api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": {"amount": "9.00", "currencyCode": "USD"}},
        idempotency_key="cap",
    )
    assert refund(api, charge_id, "9.01", "r1").json()["reasonCode"] == "TransactionAmountExceeded"
    assert refund(api, charge_id, "9.00", "r2").status_code == 201


DECLINED_FOR_PROCESSING = {"outcome": "Declined", "reason_code": "ProcessingFailure"}


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"outcome": "Declined"}, ("Declined", "AmazonRejected")),
        (DECLINED_FOR_PROCESSING, ("Declined", "ProcessingFailure")),
        ({"outcome": "Refunded"}, ("Refunded", None)),
    ],
)
def test_the_control_api_settles_a_refund(
    api: Api, captured: str, body: dict[str, Any], state: tuple[str, str | None]
) -> None:
    refund_id = refund(api, captured, "14.00", "r1").json()["refundId"]
    response = api.control(f"refunds/{refund_id}/outcome", body)
    assert response.status_code == 200, response.text
    assert refund_state(api, refund_id) == state
    # A declined refund gives its amount back: the charge can be refunded again.
    expected = "0.00" if state[0] == "Declined" else "14.00"
    assert refunded(api, captured) == expected
    again = refund(api, captured, "14.00", "r2")
    assert again.status_code == (201 if state[0] == "Declined" else 400)
    late = api.control(f"refunds/{refund_id}/outcome", {"outcome": "Refunded"})
    assert late.status_code == 422


def test_scripted_refund_declines(api: Api, captured: str) -> None:
    scripted = api.control(f"charges/{captured}/next-refunds", {"outcome": "Declined", "count": 1})
    assert scripted.status_code == 200, scripted.text
    assert scripted.json()["next_refunds"] == [
        {"outcome": "Declined", "reason_code": "AmazonRejected"}
    ]
    first = refund(api, captured, "4.00", "r1").json()["refundId"]
    second = refund(api, captured, "4.00", "r2").json()["refundId"]
    api.control("clock", {"advance_seconds": 6})
    assert refund_state(api, first) == ("Declined", "AmazonRejected")
    assert refund_state(api, second) == ("Refunded", None)
    assert refunded(api, captured) == "4.00"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("refunds/S01-0000000-0000000-R000000/outcome", {"outcome": "Declined"}, 404),
        ("charges/S01-0000000-0000000-C000000/next-refunds", {"outcome": "Declined"}, 404),
        ("charges/{charge}/next-refunds", {"outcome": "Lost"}, 400),
        ("charges/{charge}/next-refunds", {"outcome": "Declined", "reason_code": "Oops"}, 400),
        ("charges/{charge}/next-refunds", {"outcome": "Declined", "count": "x"}, 400),
    ],
)
def test_bad_refund_control_calls(
    api: Api, captured: str, path: str, body: dict[str, Any], status: int
) -> None:
    response = api.control(path.format(charge=captured), body)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("state", ["Authorized", "Canceled"])
def test_only_captured_charges_can_be_refunded(api: Api, wallet: str, state: str) -> None:
    charge_id = create_charge(api, wallet).json()["chargeId"]
    if state == "Canceled":
        api.call("DELETE", f"/charges/{charge_id}/cancel", {"cancellationReason": "x"})
    response = refund(api, charge_id, "1.00", "r1")
    assert (response.status_code, response.json()["reasonCode"]) == (422, "InvalidChargeStatus")
