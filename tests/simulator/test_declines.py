"""Declines of Create Charge on a saved wallet (docs sections 5.3, 6 and 11): each reason code,
through Amazon's simulation strings where they exist and the control API's script otherwise,
and the monthly limit that answers PeriodicAmountExceeded."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.simulator.conftest import Api, complete, create_charge, saved_wallet, session_payload

# reasonCode -> HTTP status of the answer (section 5.3; ProcessingFailure is a 500).
DECLINES = {
    "HardDeclined": 400,
    "SoftDeclined": 400,
    "ProcessingFailure": 500,
    "TransactionCountExceeded": 400,
    "PeriodicAmountExceeded": 400,
    "MFANotCompleted": 400,
    "PaymentMethodNotAllowed": 400,
    "TransactionTimedOut": 400,
    "AmazonRejected": 400,
}
SIMULATION_STRINGS = ["HardDeclined", "SoftDeclined", "TransactionTimedOut", "AmazonRejected"]


def script(api: Api, permission_id: str, **body: Any) -> requests.Response:
    return api.control(f"charge-permissions/{permission_id}/next-charges", body)


def scripted(api: Api, permission_id: str) -> list[dict[str, Any]]:
    url = f"{api.base_url}/_simulator/charge-permissions/{permission_id}/next-charges"
    result: list[dict[str, Any]] = api.http.get(url, timeout=5).json()["next_charges"]
    return result


@pytest.mark.parametrize(
    ("reason", "via"),
    [(reason, "simulation string") for reason in SIMULATION_STRINGS]
    + [(reason, "control API") for reason in DECLINES],
)
def test_every_decline(api: Api, wallet: str, reason: str, via: str) -> None:
    if via == "control API":
        assert script(api, wallet, outcome=reason).status_code == 200
        response = create_charge(api, wallet)
    else:
        response = create_charge(api, wallet, simulation=reason)
    assert response.status_code == DECLINES[reason], response.text
    assert set(response.json()) == {"reasonCode", "message"}
    assert response.json()["reasonCode"] == reason
    # Declined at once: no Charge, the wallet stays Chargeable, and the next charge goes through.
    state = api.call("GET", f"/chargePermissions/{wallet}").json()["statusDetails"]["state"]
    assert state == "Chargeable"
    assert create_charge(api, wallet, key="next").status_code == 201


def test_a_script_plays_in_order_and_is_used_up(api: Api, wallet: str) -> None:
    script(api, wallet, outcome="SoftDeclined", count=2)
    script(api, wallet, outcome="HardDeclined")
    assert [s["outcome"] for s in scripted(api, wallet)] == [
        "SoftDeclined",
        "SoftDeclined",
        "HardDeclined",
    ]
    codes = [create_charge(api, wallet, key=f"k{i}").json().get("reasonCode") for i in range(4)]
    assert codes == ["SoftDeclined", "SoftDeclined", "HardDeclined", None]
    assert scripted(api, wallet) == []


def test_a_simulation_string_wins_over_the_script(api: Api, wallet: str) -> None:
    script(api, wallet, outcome="HardDeclined")
    response = create_charge(api, wallet, simulation="SoftDeclined")
    assert response.json()["reasonCode"] == "SoftDeclined"
    assert [s["outcome"] for s in scripted(api, wallet)] == ["HardDeclined"]


def test_a_refused_charge_does_not_use_the_script(api: Api, wallet: str) -> None:
    script(api, wallet, outcome="HardDeclined")
    api.control(f"charge-permissions/{wallet}/buyer", {"action": "expire_card"})
    refused = create_charge(api, wallet)
    assert (refused.status_code, refused.json()["reasonCode"]) == (
        422,
        "InvalidChargePermissionStatus",
    )
    assert len(scripted(api, wallet)) == 1


def test_a_new_payment_method_drops_the_script(api: Api, wallet: str) -> None:
    """Docs section 6: after a HardDeclined the buyer fixes the wallet, then charges work."""
    script(api, wallet, outcome="HardDeclined", count=5)
    assert create_charge(api, wallet).json()["reasonCode"] == "HardDeclined"
    api.control(f"charge-permissions/{wallet}/buyer", {"action": "fix_card"})
    assert scripted(api, wallet) == []
    assert create_charge(api, wallet, key="after-fix").status_code == 201


@pytest.mark.parametrize(
    ("outcome", "settled"),
    [("Authorized", "Authorized"), ("HardDeclined", "Declined"), ("SoftDeclined", "Declined")],
)
def test_a_scripted_pending_authorization(
    api: Api, wallet: str, outcome: str, settled: str
) -> None:
    script(api, wallet, outcome=outcome, pending=True, count=2)
    timed_out = create_charge(api, wallet, canHandlePendingAuthorization=False)
    assert (timed_out.status_code, timed_out.json()["reasonCode"]) == (400, "TransactionTimedOut")
    response = create_charge(api, wallet, key="waits", canHandlePendingAuthorization=True)
    assert response.status_code == 201, response.text
    assert response.json()["statusDetails"]["state"] == "AuthorizationInitiated"
    api.control("clock", {"advance_seconds": 31})
    details = api.call("GET", f"/charges/{response.json()['chargeId']}").json()["statusDetails"]
    assert details["state"] == settled
    assert details["reasonCode"] == (None if settled == "Authorized" else outcome)


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "Maybe"},
        {"outcome": "PeriodicAmountExceeded", "pending": True},
        {"outcome": "HardDeclined", "count": 0},
        {"outcome": "HardDeclined", "count": "many"},
    ],
)
def test_bad_scripts_are_refused(api: Api, wallet: str, body: dict[str, Any]) -> None:
    response = script(api, wallet, **body)
    assert (response.status_code, response.json()["reasonCode"]) == (400, "InvalidParameterValue")
    assert scripted(api, wallet) == []


def test_a_processing_failure_is_not_kept_for_replay(api: Api, wallet: str) -> None:
    """A 500 is not stored under the idempotency key (docs section 7), so the same request
    again is a new attempt."""
    script(api, wallet, outcome="ProcessingFailure")
    first = create_charge(api, wallet, key="retry-me")
    assert (first.status_code, first.json()["reasonCode"]) == (500, "ProcessingFailure")
    again = create_charge(api, wallet, key="retry-me")
    assert again.status_code == 201, again.text


# -- monthly limits ----------------------------------------------------------------------------


def limit(api: Api, permission_id: str, amount: str | None) -> None:
    body = {"amount": amount, "currencyCode": "USD"} if amount else {}
    response = api.control(f"charge-permissions/{permission_id}/monthly-limit", body)
    assert response.status_code == 200, response.text


def test_the_monthly_limit_answers_periodic_amount_exceeded(api: Api, wallet: str) -> None:
    limit(api, wallet, "50.00")
    assert create_charge(api, wallet, "30.00", key="a").status_code == 201
    over = create_charge(api, wallet, "25.00", key="b")
    assert (over.status_code, over.json()["reasonCode"]) == (400, "PeriodicAmountExceeded")
    assert create_charge(api, wallet, "20.00", key="c").status_code == 201  # exactly 50.00


def test_a_canceled_charge_frees_its_amount(api: Api, wallet: str) -> None:
    limit(api, wallet, "50.00")
    first = create_charge(api, wallet, "40.00", key="a").json()["chargeId"]
    assert create_charge(api, wallet, "20.00", key="b").status_code == 400
    api.call("DELETE", f"/charges/{first}/cancel", {"cancellationReason": "changed"})
    assert create_charge(api, wallet, "20.00", key="c").status_code == 201


def test_a_partial_capture_counts_what_was_captured(api: Api, wallet: str) -> None:
    limit(api, wallet, "50.00")
    charge_id = create_charge(api, wallet, "40.00", key="a").json()["chargeId"]
    captured = api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": {"amount": "10.00", "currencyCode": "USD"}},
        idempotency_key="cap",
    )
    assert captured.status_code == 200, captured.text
    assert create_charge(api, wallet, "40.00", key="b").status_code == 201


def test_the_limit_starts_again_next_month(api: Api, wallet: str) -> None:
    limit(api, wallet, "50.00")
    assert create_charge(api, wallet, "50.00", key="a").status_code == 201
    assert create_charge(api, wallet, "1.00", key="b").status_code == 400
    api.control("clock", {"advance_seconds": 32 * 86400})
    assert create_charge(api, wallet, "50.00", key="c").status_code == 201


def test_the_default_limit_and_going_back_to_it(api: Api, wallet: str) -> None:
    assert create_charge(api, wallet, "1999.00", key="a").status_code == 201
    assert create_charge(api, wallet, "2.00", key="b").json()["reasonCode"] == (
        "PeriodicAmountExceeded"
    )
    limit(api, wallet, "5000.00")
    assert create_charge(api, wallet, "2.00", key="c").status_code == 201
    limit(api, wallet, None)
    assert create_charge(api, wallet, "2.00", key="d").status_code == 400


def test_only_saved_wallets_have_a_monthly_limit(api: Api) -> None:
    sid = api.create_session(session_payload(intent="Confirm"))["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    one_time = complete(api, sid).json()["chargePermissionId"]
    assert create_charge(api, one_time, "2500.00").status_code == 201


def test_a_pending_card_wallet_counts_its_pending_charges(api: Api) -> None:
    wallet = saved_wallet(api, "pending")
    limit(api, wallet, "50.00")
    pending = create_charge(api, wallet, "40.00", key="a", canHandlePendingAuthorization=True)
    assert pending.json()["statusDetails"]["state"] == "AuthorizationInitiated"
    over = create_charge(api, wallet, "20.00", key="b", canHandlePendingAuthorization=True)
    assert over.json()["reasonCode"] == "PeriodicAmountExceeded"
