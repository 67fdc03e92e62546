"""Create Charge on a saved wallet (docs sections 5.1, 6 and 11): the fields Amazon accepts,
pending authorizations with canHandlePendingAuthorization, and how they settle."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.conftest import Api, complete, create_charge, saved_wallet, session_payload

INITIATORS = ["CITU", "MITU", "CITR", "MITR"]
CHANNELS = ["Web", "Phone", "App", "Alexa", "PointOfSale", "FireTv", "Offline", "Amazon"]


def charge_state(api: Api, charge_id: str) -> tuple[str, str | None]:
    details = api.call("GET", f"/charges/{charge_id}").json()["statusDetails"]
    return details["state"], details["reasonCode"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("chargeInitiator", value) for value in INITIATORS]
    + [("channel", value) for value in CHANNELS],
)
def test_every_initiator_and_channel_is_accepted(
    api: Api, wallet: str, field: str, value: str
) -> None:
    response = create_charge(api, wallet, **{field: value})
    assert response.status_code == 201, response.text
    assert response.json()[field] == value
    assert response.json()["statusDetails"]["state"] == "Authorized"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chargeInitiator", "CIT"),
        ("chargeInitiator", "citu"),
        ("channel", "Web "),
        ("channel", "Email"),
        ("captureNow", "true"),
        ("canHandlePendingAuthorization", 1),
    ],
)
def test_unknown_values_are_refused(api: Api, wallet: str, field: str, value: Any) -> None:
    response = create_charge(api, wallet, **{field: value})
    assert (response.status_code, response.json()["reasonCode"]) == (400, "InvalidParameterValue")


@pytest.mark.parametrize(
    ("card", "capture", "settled"),
    [
        ("pending", False, ("Authorized", None)),
        ("pending", True, ("Captured", None)),
        ("pending-declined", False, ("Declined", "HardDeclined")),
    ],
    ids=["0701", "0701-capture-now", "4354"],
)
def test_a_pending_authorization_settles_on_the_clock(
    api: Api, card: str, capture: bool, settled: tuple[str, str | None]
) -> None:
    """Section 11: the slow cards answer 201 AuthorizationInitiated when the merchant can wait,
    and settle about 30 s later."""
    wallet = saved_wallet(api, card)
    response = create_charge(api, wallet, canHandlePendingAuthorization=True, captureNow=capture)
    assert response.status_code == 201, response.text
    charge_id = response.json()["chargeId"]
    assert response.json()["statusDetails"]["state"] == "AuthorizationInitiated"
    api.control("clock", {"advance_seconds": 20})
    assert charge_state(api, charge_id) == ("AuthorizationInitiated", None)
    api.control("clock", {"advance_seconds": 11})
    assert charge_state(api, charge_id) == settled


@pytest.mark.parametrize("card", ["pending", "pending-declined"])
def test_a_slow_card_without_can_handle_pending_authorization_times_out(
    api: Api, card: str
) -> None:
    wallet = saved_wallet(api, card)
    response = create_charge(api, wallet, canHandlePendingAuthorization=False)
    assert (response.status_code, response.json()["reasonCode"]) == (400, "TransactionTimedOut")
    later = create_charge(api, wallet, key="charge-2", canHandlePendingAuthorization=True)
    assert later.status_code == 201, later.text


@pytest.mark.parametrize(
    ("can_wait", "status", "state"),
    [(True, 201, "AuthorizationInitiated"), (False, 400, None)],
)
def test_the_authorization_initiated_simulation_string(
    api: Api, wallet: str, can_wait: bool, status: int, state: str | None
) -> None:
    response = create_charge(
        api, wallet, simulation="AuthorizationInitiated", canHandlePendingAuthorization=can_wait
    )
    assert response.status_code == status, response.text
    if state is None:
        assert response.json()["reasonCode"] == "InvalidSandboxSimulationSpecified"
        return
    assert response.json()["statusDetails"]["state"] == state
    api.control("clock", {"advance_seconds": 31})
    assert charge_state(api, response.json()["chargeId"]) == ("Authorized", None)


@pytest.mark.parametrize(
    ("outcome", "settled"),
    [
        ("Authorized", ("Authorized", None)),
        ("SoftDeclined", ("Declined", "SoftDeclined")),
        ("HardDeclined", ("Declined", "HardDeclined")),
        ("Declined", ("Declined", "HardDeclined")),
        ("AmazonRejected", ("Declined", "AmazonRejected")),
        ("ProcessingFailure", ("Declined", "ProcessingFailure")),
        ("TransactionTimedOut", ("Declined", "TransactionTimedOut")),
    ],
)
def test_the_control_api_settles_a_pending_charge_now(
    api: Api, outcome: str, settled: tuple[str, str | None]
) -> None:
    wallet = saved_wallet(api, "pending")
    charge_id = create_charge(api, wallet, canHandlePendingAuthorization=True).json()["chargeId"]
    response = api.control(f"charges/{charge_id}/outcome", {"outcome": outcome})
    assert response.status_code == 200, response.text
    assert charge_state(api, charge_id) == settled
    again = api.control(f"charges/{charge_id}/outcome", {"outcome": "Authorized"})
    assert (again.status_code, again.json()["reasonCode"]) == (422, "InvalidChargeStatus")


def test_an_unknown_settlement_is_refused(api: Api) -> None:
    wallet = saved_wallet(api, "pending")
    charge_id = create_charge(api, wallet, canHandlePendingAuthorization=True).json()["chargeId"]
    response = api.control(f"charges/{charge_id}/outcome", {"outcome": "Maybe"})
    assert (response.status_code, response.json()["reasonCode"]) == (400, "InvalidParameterValue")
    assert charge_state(api, charge_id) == ("AuthorizationInitiated", None)


def test_the_4354_card_at_checkout_answers_202_then_declines(api: Api) -> None:
    sid = api.create_session(session_payload())["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "pending-declined"})
    response = complete(api, sid)
    assert response.status_code == 202, response.text
    charge_id = response.json()["chargeId"]
    assert charge_state(api, charge_id) == ("AuthorizationInitiated", None)
    api.control("clock", {"advance_seconds": 31})
    assert charge_state(api, charge_id) == ("Declined", "HardDeclined")
