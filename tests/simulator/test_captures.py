"""Capture and Cancel Charge (docs sections 4, 5.1 and 11): partial and full captures,
CaptureInitiated, cancels, and the 30-day expiry of an unused authorization."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.simulator.conftest import Api, create_charge

USD = "USD"


def capture(
    api: Api, charge_id: str, amount: str, currency: str = USD, key: str = "cap", **options: Any
) -> requests.Response:
    return api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": {"amount": amount, "currencyCode": currency}},
        idempotency_key=key,
        **options,
    )


def cancel(api: Api, charge_id: str, reason: str = "out of stock") -> requests.Response:
    return api.call("DELETE", f"/charges/{charge_id}/cancel", {"cancellationReason": reason})


def details(api: Api, charge_id: str) -> dict[str, Any]:
    charge: dict[str, Any] = api.call("GET", f"/charges/{charge_id}").json()
    return charge


@pytest.fixture
def authorized(api: Api, wallet: str) -> str:
    """An Authorized charge of 14.00 USD on a saved wallet."""
    response = create_charge(api, wallet)
    assert response.json()["statusDetails"]["state"] == "Authorized", response.text
    charge_id: str = response.json()["chargeId"]
    return charge_id


@pytest.mark.parametrize("amount", ["14.00", "10.00", "0.01"], ids=["full", "partial", "cent"])
def test_captures_full_and_partial(api: Api, authorized: str, amount: str) -> None:
    response = capture(api, authorized, amount)
    assert response.status_code == 200, response.text
    charge = response.json()
    assert charge["statusDetails"]["state"] == "Captured"
    assert charge["captureAmount"] == {"amount": amount, "currencyCode": USD}
    assert charge["refundedAmount"] == {"amount": "0.00", "currencyCode": USD}
    assert charge["chargeAmount"] == {"amount": "14.00", "currencyCode": USD}
    again = capture(api, authorized, "1.00", key="cap-2")  # one capture per charge
    assert (again.status_code, again.json()["reasonCode"]) == (422, "InvalidChargeStatus")


@pytest.mark.parametrize(
    ("captured", "reason"),
    [
        ({"amount": "14.01", "currencyCode": USD}, "TransactionAmountExceeded"),
        ({"amount": "14.00", "currencyCode": "EUR"}, "CurrencyMismatch"),
        ({"amount": "-1", "currencyCode": USD}, "InvalidParameterValue"),
        ({"amount": "1"}, "InvalidParameterValue"),
    ],
)
def test_capture_errors(api: Api, authorized: str, captured: dict[str, str], reason: str) -> None:
    response = api.call(
        "POST", f"/charges/{authorized}/capture", {"captureAmount": captured}, idempotency_key="c"
    )
    assert (response.status_code, response.json()["reasonCode"]) == (400, reason)
    assert details(api, authorized)["statusDetails"]["state"] == "Authorized"


@pytest.mark.parametrize(
    ("how", "via"),
    [
        ("simulation string", "capture"),
        ("simulation string", "create"),
        ("8 days later", "capture"),
    ],
)
def test_capture_initiated_then_captured(api: Api, wallet: str, how: str, via: str) -> None:
    """Section 11 CaptureInitiated, and Amazon's asynchronous capture more than 7 days after the
    authorization: CaptureInitiated first, Captured 30 s later on the simulator clock."""
    simulate = {"extra_signed": {"x-amz-pay-simulation-code": "CaptureInitiated"}}
    if via == "create":
        response = create_charge(api, wallet, captureNow=True, simulation="CaptureInitiated")
        assert response.status_code == 201, response.text
        charge_id = response.json()["chargeId"]
    else:
        charge_id = create_charge(api, wallet).json()["chargeId"]
        if how == "8 days later":
            api.control("clock", {"advance_seconds": 8 * 86400})
        response = capture(api, charge_id, "14.00", **(simulate if how != "8 days later" else {}))
        assert response.status_code == 200, response.text
    assert response.json()["statusDetails"]["state"] == "CaptureInitiated"
    assert response.json()["captureAmount"] == {"amount": "14.00", "currencyCode": USD}
    for refused in (
        capture(api, charge_id, "14.00", key="cap-again"),
        cancel(api, charge_id),
        api.call(
            "POST",
            "/refunds",
            {"chargeId": charge_id, "refundAmount": {"amount": "1.00", "currencyCode": USD}},
            idempotency_key="ref",
        ),
    ):
        assert (refused.status_code, refused.json()["reasonCode"]) == (422, "InvalidChargeStatus")
    api.control("clock", {"advance_seconds": 31})
    charge = details(api, charge_id)
    assert charge["statusDetails"]["state"] == "Captured"
    assert charge["refundedAmount"] == {"amount": "0.00", "currencyCode": USD}


def test_capture_initiated_needs_capture_now_on_create(api: Api, wallet: str) -> None:
    response = create_charge(api, wallet, captureNow=False, simulation="CaptureInitiated")
    assert (response.status_code, response.json()["reasonCode"]) == (
        400,
        "InvalidSandboxSimulationSpecified",
    )


@pytest.mark.parametrize(
    ("outcome", "state", "reason"),
    [("Captured", "Captured", None), ("SoftDeclined", "Declined", "SoftDeclined")],
)
def test_the_control_api_settles_a_capture(
    api: Api, authorized: str, outcome: str, state: str, reason: str | None
) -> None:
    capture(
        api, authorized, "14.00", extra_signed={"x-amz-pay-simulation-code": "CaptureInitiated"}
    )
    response = api.control(f"charges/{authorized}/outcome", {"outcome": outcome})
    assert response.status_code == 200, response.text
    got = details(api, authorized)["statusDetails"]
    assert (got["state"], got["reasonCode"]) == (state, reason)


@pytest.mark.parametrize("source", ["authorized", "pending"])
def test_cancel_an_authorization(api: Api, wallet: str, source: str) -> None:
    if source == "pending":
        api.control(
            f"charge-permissions/{wallet}/next-charges", {"outcome": "Authorized", "pending": True}
        )
    charge_id = create_charge(api, wallet, canHandlePendingAuthorization=True).json()["chargeId"]
    response = cancel(api, charge_id, "buyer changed their mind")
    assert response.status_code == 200, response.text
    got = response.json()["statusDetails"]
    assert (got["state"], got["reasonCode"]) == ("Canceled", "MerchantCanceled")
    assert got["reasonDescription"] == "buyer changed their mind"
    assert cancel(api, charge_id).status_code == 200  # canceling again changes nothing
    api.control("clock", {"advance_seconds": 60})  # a pending one does not settle any more
    assert details(api, charge_id)["statusDetails"]["state"] == "Canceled"
    refused = capture(api, charge_id, "14.00")
    assert (refused.status_code, refused.json()["reasonCode"]) == (422, "InvalidChargeStatus")


def test_a_captured_charge_cannot_be_canceled(api: Api, authorized: str) -> None:
    capture(api, authorized, "14.00")
    response = cancel(api, authorized)
    assert (response.status_code, response.json()["reasonCode"]) == (422, "InvalidChargeStatus")


def test_an_authorization_expires_unused_after_30_days(api: Api, authorized: str) -> None:
    api.control("clock", {"advance_seconds": 29 * 86400})
    assert details(api, authorized)["statusDetails"]["state"] == "Authorized"
    api.control("clock", {"advance_seconds": 86400 + 60})
    got = details(api, authorized)["statusDetails"]
    assert (got["state"], got["reasonCode"]) == ("Canceled", "ExpiredUnused")
    refused = capture(api, authorized, "14.00")
    assert (refused.status_code, refused.json()["reasonCode"]) == (422, "InvalidChargeStatus")
