"""State machines over real HTTP: Checkout Session, Charge Permission, Charge and Refund
(docs sections 4, 5 and 6), with the error answers Amazon gives for each wrong move."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amazonpay import signing
from amazonpay.simulator import Simulator, serve_in_thread
from tests.simulator.conftest import (
    PLAIN_KEY_ID,
    USD_14,
    Api,
    Keys,
    complete,
    public_keys,
    session_payload,
    setup_only_payload,
)

TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SECTION_4_FIELDS = {
    "checkoutSessionId", "webCheckoutDetails", "productType", "paymentDetails",
    "chargePermissionType", "recurringMetadata", "paymentMethodOnFileMetadata", "merchantMetadata",
    "supplementaryData", "buyer", "billingAddress", "shippingAddress", "shippingAddressList",
    "multiAddressesCheckoutMetadata", "paymentPreferences", "statusDetails", "constraints",
    "creationTimestamp", "expirationTimestamp", "chargePermissionId", "chargeId", "storeId",
    "deliverySpecifications", "addressDetails", "scopes", "providerMetadata", "platformId",
    "releaseEnvironment", "checkoutButtonText",
}  # fmt: skip


def test_a_new_session_is_open_with_every_field_and_the_buyer_constraint(api: Api) -> None:
    session = api.create_session(session_payload())
    assert set(session) >= SECTION_4_FIELDS
    assert UUID.match(session["checkoutSessionId"])
    assert session["statusDetails"]["state"] == "Open"
    assert TIMESTAMP.match(session["creationTimestamp"])
    assert TIMESTAMP.match(session["statusDetails"]["lastUpdatedTimestamp"])
    assert [c["constraintId"] for c in session["constraints"]] == ["BuyerNotAssociated"]
    assert session["buyer"] is None
    assert session["chargeId"] is None
    # Docs section 4: amazonPayRedirectUrl only once every constraint is cleared.
    assert session["webCheckoutDetails"]["amazonPayRedirectUrl"] is None


def test_missing_details_show_up_as_constraints_until_updated(api: Api) -> None:
    payload = session_payload()
    payload["paymentDetails"] = {}
    del payload["webCheckoutDetails"]["checkoutResultReturnUrl"]
    session = api.create_session(payload)
    ids = {c["constraintId"] for c in session["constraints"]}
    assert ids == {
        "CheckoutResultReturnUrlNotSet",
        "ChargeAmountNotSet",
        "PaymentIntentNotSet",
        "BuyerNotAssociated",
    }
    assert session["webCheckoutDetails"]["amazonPayRedirectUrl"] is None
    sid = session["checkoutSessionId"]
    response = api.call(
        "PATCH",
        f"/checkoutSessions/{sid}",
        {
            "webCheckoutDetails": {"checkoutResultReturnUrl": "https://shop.example/r"},
            "paymentDetails": {
                "paymentIntent": "Authorize",
                "chargeAmount": {"amount": 9, "currencyCode": "USD"},
            },
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert [c["constraintId"] for c in updated["constraints"]] == ["BuyerNotAssociated"]
    assert updated["webCheckoutDetails"]["amazonPayRedirectUrl"] is None
    assert updated["paymentDetails"]["chargeAmount"] == {"amount": 9, "currencyCode": "USD"}


@pytest.mark.parametrize(
    ("steps", "constraints", "redirect"),
    [
        ([], ["BuyerNotAssociated"], False),
        (["buyer"], [], True),
        (["drop-amount", "buyer"], ["ChargeAmountNotSet"], False),
        (["drop-amount", "buyer", "set-amount"], [], True),
        (["buyer", "cancel"], [], False),
    ],
    ids=["new", "buyer", "buyer-no-amount", "buyer-then-amount", "canceled"],
)
def test_the_redirect_url_appears_only_once_every_constraint_is_cleared(
    api: Api, steps: list[str], constraints: list[str], redirect: bool
) -> None:
    payload = session_payload()
    if "drop-amount" in steps:
        del payload["paymentDetails"]["chargeAmount"]
    sid = api.create_session(payload)["checkoutSessionId"]
    if "buyer" in steps:
        assert api.control(f"sessions/{sid}/outcome", {"outcome": "success"}).status_code == 200
    if "set-amount" in steps:
        patch = {"paymentDetails": {"chargeAmount": USD_14}}
        assert api.call("PATCH", f"/checkoutSessions/{sid}", patch).status_code == 200
    if "cancel" in steps:
        simulate = {"x-amz-pay-simulation-code": "BuyerCanceled"}
        complete(api, sid, {"chargeAmount": USD_14}, extra_signed=simulate)
    session = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert [c["constraintId"] for c in session["constraints"]] == constraints
    url = session["webCheckoutDetails"]["amazonPayRedirectUrl"]
    if redirect:
        assert url == f"{api.base_url}/hosted/{sid}"
        page = api.http.get(url)
        assert 'data-testid="hosted-status"' in page.text
        assert f"amazonCheckoutSessionId={sid}" in page.text  # the way back to the shop
    else:
        assert url is None


def test_complete_authorizes_and_creates_permission_and_charge(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    before = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert before["constraints"] == []
    assert before["buyer"]["email"]
    assert before["paymentPreferences"][0]["paymentDescriptor"]
    response = complete(api, sid, {"chargeAmount": {"amount": 14, "currencyCode": "USD"}})
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["statusDetails"]["state"] == "Completed"
    assert re.match(r"^S01-\d{7}-\d{7}$", done["chargePermissionId"])
    assert re.match(rf"^{done['chargePermissionId']}-C\d{{6}}$", done["chargeId"])
    permission = api.call("GET", f"/chargePermissions/{done['chargePermissionId']}").json()
    assert permission["statusDetails"]["state"] == "Chargeable"
    assert permission["chargePermissionType"] == "OneTime"
    charge = api.call("GET", f"/charges/{done['chargeId']}").json()
    assert charge["statusDetails"]["state"] == "Authorized"
    assert charge["chargeAmount"] == USD_14


def test_authorize_with_capture_captures(api: Api) -> None:
    session = api.create_session(session_payload(intent="AuthorizeWithCapture"))
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    done = complete(api, sid).json()
    charge = api.call("GET", f"/charges/{done['chargeId']}").json()
    assert charge["statusDetails"]["state"] == "Captured"


def test_confirm_intent_creates_no_charge(api: Api) -> None:
    session = api.create_session(session_payload(intent="Confirm"))
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    done = complete(api, sid).json()
    assert done["chargePermissionId"]
    assert done["chargeId"] is None


def test_setup_only_saved_wallet_completes_with_an_empty_body(api: Api) -> None:
    session = api.create_session(setup_only_payload())
    assert {c["constraintId"] for c in session["constraints"]} == {"BuyerNotAssociated"}
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    response = complete(api, sid, {})
    assert response.status_code == 200, response.text
    assert response.json()["chargePermissionType"] == "PaymentMethodOnFile"
    assert response.json()["chargeId"] is None
    permission = api.call(
        "GET", f"/chargePermissions/{response.json()['chargePermissionId']}"
    ).json()
    assert permission["chargePermissionType"] == "PaymentMethodOnFile"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"chargeAmount": {"amount": "14.01", "currencyCode": "USD"}}, 409, "AmountMismatch"),
        ({"chargeAmount": {"amount": "14.00", "currencyCode": "EUR"}}, 409, "AmountMismatch"),
        ({}, 400, "MissingParameterValue"),
        (
            {"chargeAmount": {"amount": "fourteen", "currencyCode": "USD"}},
            400,
            "InvalidParameterValue",
        ),
        ([], 400, "InvalidRequestFormat"),
    ],
)
def test_complete_amount_errors(
    api: Api, buyer_session: dict[str, Any], body: Any, status: int, reason: str
) -> None:
    response = complete(api, buyer_session["checkoutSessionId"], body)
    assert (response.status_code, response.json()["reasonCode"]) == (status, reason)


@pytest.mark.parametrize("amount", ["14", "14.0", 14, 14.0, "14.000"])
def test_amounts_compare_as_decimals(api: Api, buyer_session: dict[str, Any], amount: Any) -> None:
    response = complete(
        api,
        buyer_session["checkoutSessionId"],
        {"chargeAmount": {"amount": amount, "currencyCode": "USD"}},
    )
    assert response.status_code == 200, response.text


def test_invalid_json_body(api: Api, buyer_session: dict[str, Any]) -> None:
    response = api.call(
        "POST", f"/checkoutSessions/{buyer_session['checkoutSessionId']}/complete", raw_body="{oops"
    )
    assert (response.status_code, response.json()["reasonCode"]) == (400, "InvalidRequestFormat")


def test_completing_twice_is_invalid_status(api: Api, buyer_session: dict[str, Any]) -> None:
    sid = buyer_session["checkoutSessionId"]
    assert complete(api, sid).status_code == 200
    again = complete(api, sid)
    assert (again.status_code, again.json()["reasonCode"]) == (422, "InvalidCheckoutSessionStatus")
    update = api.call(
        "PATCH", f"/checkoutSessions/{sid}", {"merchantMetadata": {"noteToBuyer": "x"}}
    )
    assert (update.status_code, update.json()["reasonCode"]) == (
        422,
        "InvalidCheckoutSessionStatus",
    )


def test_complete_before_the_buyer_finished_is_invalid_status(api: Api) -> None:
    session = api.create_session(session_payload())
    response = complete(api, session["checkoutSessionId"])
    assert (response.status_code, response.json()["reasonCode"]) == (
        422,
        "InvalidCheckoutSessionStatus",
    )


@pytest.mark.parametrize("outcome", ["BuyerCanceled", "Declined", "AmazonRejected"])
def test_canceled_sessions_refuse_complete(api: Api, outcome: str) -> None:
    session = api.create_session(session_payload())
    sid = session["checkoutSessionId"]
    assert api.control(f"sessions/{sid}/outcome", {"outcome": outcome}).status_code == 200
    got = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert (got["statusDetails"]["state"], got["statusDetails"]["reasonCode"]) == (
        "Canceled",
        outcome,
    )
    response = complete(api, sid)
    assert (response.status_code, response.json()["reasonCode"]) == (422, "CheckoutSessionCanceled")


def test_sessions_expire_after_24_hours_of_simulated_time(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    api.control("clock", {"advance_seconds": 23 * 3600})
    assert api.call("GET", f"/checkoutSessions/{sid}").json()["statusDetails"]["state"] == "Open"
    assert api.control("clock", {"advance_seconds": 3601}).status_code == 200
    got = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert (got["statusDetails"]["state"], got["statusDetails"]["reasonCode"]) == (
        "Canceled",
        "Expired",
    )
    assert complete(api, sid).json()["reasonCode"] == "CheckoutSessionCanceled"


def test_pending_authorization_answers_202_then_authorizes_with_the_clock(api: Api) -> None:
    session = api.create_session(session_payload())
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "pending"})
    response = complete(api, sid)
    assert response.status_code == 202, response.text
    charge_id = response.json()["chargeId"]
    assert (
        api.call("GET", f"/charges/{charge_id}").json()["statusDetails"]["state"]
        == "AuthorizationInitiated"
    )
    api.control("clock", {"advance_seconds": 31})
    assert api.call("GET", f"/charges/{charge_id}").json()["statusDetails"]["state"] == "Authorized"


@pytest.mark.parametrize(
    ("outcome", "state", "reason"),
    [
        ("Authorized", "Authorized", None),
        ("SoftDeclined", "Declined", "SoftDeclined"),
        ("HardDeclined", "Declined", "HardDeclined"),
    ],
)
def test_pending_charge_settled_by_control_call(
    api: Api, outcome: str, state: str, reason: str | None
) -> None:
    session = api.create_session(session_payload())
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "pending"})
    charge_id = complete(api, sid).json()["chargeId"]
    assert api.control(f"charges/{charge_id}/outcome", {"outcome": outcome}).status_code == 200
    details = api.call("GET", f"/charges/{charge_id}").json()["statusDetails"]
    assert (details["state"], details["reasonCode"]) == (state, reason)


def test_charge_capture_refund_cancel_and_close(api: Api, buyer_session: dict[str, Any]) -> None:
    done = complete(api, buyer_session["checkoutSessionId"]).json()
    charge_id, permission_id = done["chargeId"], done["chargePermissionId"]
    over = api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": {"amount": "15.00", "currencyCode": "USD"}},
        idempotency_key="cap0",
    )
    assert (over.status_code, over.json()["reasonCode"]) == (400, "TransactionAmountExceeded")
    captured = api.call(
        "POST", f"/charges/{charge_id}/capture", {"captureAmount": USD_14}, idempotency_key="cap1"
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["statusDetails"]["state"] == "Captured"
    cancel = api.call("DELETE", f"/charges/{charge_id}/cancel", {"cancellationReason": "late"})
    assert (cancel.status_code, cancel.json()["reasonCode"]) == (422, "InvalidChargeStatus")

    refund = api.call(
        "POST",
        "/refunds",
        {"chargeId": charge_id, "refundAmount": {"amount": "4.00", "currencyCode": "USD"}},
        idempotency_key="ref1",
    )
    assert refund.status_code == 201, refund.text
    refund_id = refund.json()["refundId"]
    assert re.match(rf"^{permission_id}-R\d{{6}}$", refund_id)
    assert refund.json()["statusDetails"]["state"] == "RefundInitiated"
    too_much = api.call(
        "POST",
        "/refunds",
        {"chargeId": charge_id, "refundAmount": {"amount": "10.01", "currencyCode": "USD"}},
        idempotency_key="ref2",
    )
    assert (too_much.status_code, too_much.json()["reasonCode"]) == (
        400,
        "TransactionAmountExceeded",
    )
    api.control("clock", {"advance_seconds": 10})
    assert api.call("GET", f"/refunds/{refund_id}").json()["statusDetails"]["state"] == "Refunded"

    second = api.call(
        "POST",
        "/charges",
        {
            "chargePermissionId": permission_id,
            "chargeAmount": {"amount": "2.00", "currencyCode": "USD"},
        },
        idempotency_key="ch2",
    )
    assert second.status_code == 201, second.text
    assert second.json()["statusDetails"]["state"] == "Authorized"
    canceled = api.call(
        "DELETE",
        f"/charges/{second.json()['chargeId']}/cancel",
        {"cancellationReason": "changed mind"},
    )
    assert canceled.json()["statusDetails"]["state"] == "Canceled"

    updated = api.call(
        "PATCH",
        f"/chargePermissions/{permission_id}",
        {"merchantMetadata": {"merchantReferenceId": "order-9"}},
    )
    assert updated.json()["merchantMetadata"]["merchantReferenceId"] == "order-9"
    closed = api.call(
        "DELETE",
        f"/chargePermissions/{permission_id}/close",
        {"closureReason": "done", "cancelPendingCharges": False},
    )
    assert closed.json()["statusDetails"]["state"] == "Closed"
    refused = api.call(
        "POST",
        "/charges",
        {"chargePermissionId": permission_id, "chargeAmount": USD_14},
        idempotency_key="ch3",
    )
    assert (refused.status_code, refused.json()["reasonCode"]) == (
        422,
        "InvalidChargePermissionStatus",
    )


def test_non_chargeable_permission_refuses_charges(api: Api, buyer_session: dict[str, Any]) -> None:
    permission_id = complete(api, buyer_session["checkoutSessionId"]).json()["chargePermissionId"]
    api.control(
        f"charge-permissions/{permission_id}/state",
        {"state": "NonChargeable", "reason_code": "PaymentMethodExpired"},
    )
    permission = api.call("GET", f"/chargePermissions/{permission_id}").json()
    assert permission["statusDetails"]["state"] == "NonChargeable"
    response = api.call(
        "POST",
        "/charges",
        {"chargePermissionId": permission_id, "chargeAmount": USD_14},
        idempotency_key="c",
    )
    assert response.status_code == 422


def test_live_objects_get_p01_ids_and_are_invisible_in_sandbox(api: Api) -> None:
    api.prefix, api.key_id = "/live/v2", PLAIN_KEY_ID
    session = api.create_session(session_payload())
    sid = session["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    done = complete(api, sid).json()
    assert done["chargePermissionId"].startswith("P01-")
    assert done["releaseEnvironment"] == "Live"
    hidden = api.call("GET", f"/checkoutSessions/{sid}", prefix="/sandbox/v2")
    assert (hidden.status_code, hidden.json()["reasonCode"]) == (404, "ResourceNotFound")


@pytest.mark.parametrize(
    ("method", "resource", "status", "reason"),
    [
        ("GET", "/checkoutSessions/00000000-0000-0000-0000-000000000000", 404, "ResourceNotFound"),
        ("GET", "/chargePermissions/S01-0000000-0000000", 404, "ResourceNotFound"),
        ("GET", "/charges/S01-0000000-0000000-C000000", 404, "ResourceNotFound"),
        ("GET", "/refunds/S01-0000000-0000000-R000000", 404, "ResourceNotFound"),
        ("GET", "/nothingHere", 404, "ResourceNotFound"),
        ("PUT", "/checkoutSessions/abc", 405, "UnsupportedOperation"),
        ("GET", "/checkoutSessions", 405, "UnsupportedOperation"),
    ],
)
def test_unknown_ids_and_routes(
    api: Api, method: str, resource: str, status: int, reason: str
) -> None:
    response = api.call(method, resource)
    assert (response.status_code, response.json()["reasonCode"]) == (status, reason)
    assert response.headers["x-amz-pay-request-id"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"webCheckoutDetails": {}}, "MissingParameterValue"),  # no storeId
        ({"storeId": "s"}, "MissingParameterValue"),  # no webCheckoutDetails
        (
            {
                "storeId": "s",
                "webCheckoutDetails": {},
                "paymentDetails": {"paymentIntent": "Steal"},
            },
            "InvalidParameterValue",
        ),
        (
            {"storeId": "s", "webCheckoutDetails": {}, "chargePermissionType": "Forever"},
            "InvalidParameterValue",
        ),
    ],
)
def test_create_checkout_session_validation(api: Api, payload: dict[str, Any], reason: str) -> None:
    response = api.call("POST", "/checkoutSessions", payload, idempotency_key="v")
    assert (response.status_code, response.json()["reasonCode"]) == (400, reason)


def test_an_injected_clock_expires_sessions(keys: Keys) -> None:
    start = datetime.now(UTC)
    moments = [start]
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), clock=lambda: moments[-1]))
    try:
        api = Api(handle.base_url, keys)
        sid = api.create_session(session_payload())["checkoutSessionId"]
        moments.append(start + timedelta(hours=24, seconds=1))
        # Signed with the real time: still fresh, although the simulator lives a day later.
        details = api.call("GET", f"/checkoutSessions/{sid}").json()["statusDetails"]
        assert (details["state"], details["reasonCode"]) == ("Canceled", "Expired")
        # A client that signs with the injected clock is accepted too.
        later = signing.format_amz_date(moments[-1])
        assert api.call("GET", f"/checkoutSessions/{sid}", date=later).status_code == 200
    finally:
        handle.shutdown()


def _simulate(code: str) -> dict[str, Any]:
    return {"extra_signed": {"x-amz-pay-simulation-code": code}}


@pytest.mark.parametrize(
    "case",
    [
        ("BuyerCanceled", 422, "CheckoutSessionCanceled", ("Canceled", "BuyerCanceled")),
        ("Declined", 422, "CheckoutSessionCanceled", ("Canceled", "Declined")),
        ("AmazonCanceled", 422, "CheckoutSessionCanceled", ("Canceled", "AmazonCanceled")),
        ("AuthorizationInitiated", 202, None, ("Completed", None)),
        ("HardDeclined", 400, "InvalidSandboxSimulationSpecified", ("Open", None)),
    ],
    ids=lambda case: case[0],
)
def test_simulation_codes_on_complete(
    api: Api,
    buyer_session: dict[str, Any],
    case: tuple[str, int, str | None, tuple[str, str | None]],
) -> None:
    code, status, reason, state = case
    sid = buyer_session["checkoutSessionId"]
    response = api.call(
        "POST", f"/checkoutSessions/{sid}/complete", {"chargeAmount": USD_14}, **_simulate(code)
    )
    assert response.status_code == status, response.text
    if reason:
        assert response.json()["reasonCode"] == reason
    details = api.call("GET", f"/checkoutSessions/{sid}").json()["statusDetails"]
    assert (details["state"], details["reasonCode"]) == state


@pytest.mark.parametrize("code", ["SoftDeclined", "HardDeclined", "AmazonRejected"])
def test_simulation_codes_on_create_charge_and_close(
    api: Api, buyer_session: dict[str, Any], code: str
) -> None:
    permission_id = complete(api, buyer_session["checkoutSessionId"]).json()["chargePermissionId"]
    declined = api.call(
        "POST",
        "/charges",
        {"chargePermissionId": permission_id, "chargeAmount": USD_14},
        idempotency_key=f"sim-{code}",
        **_simulate(code),
    )
    assert (declined.status_code, declined.json()["reasonCode"]) == (400, code)
    closed = api.call(
        "DELETE",
        f"/chargePermissions/{permission_id}/close",
        {"closureReason": "x"},
        **_simulate("AmazonClosed"),
    )
    assert closed.json()["statusDetails"]["reasons"][0]["reasonCode"] == "AmazonClosed"


def test_simulation_codes_are_sandbox_only(api: Api) -> None:
    api.prefix, api.key_id = "/live/v2", PLAIN_KEY_ID
    response = api.call("GET", "/checkoutSessions/x", **_simulate("Declined"))
    assert (response.status_code, response.json()["reasonCode"]) == (
        400,
        "InvalidSandboxSimulationSpecified",
    )


Pending = tuple[str, str, bool, int, str | None, tuple[str, str | None]]


@pytest.mark.parametrize(
    "case",
    [
        ("card", "Authorize", True, 202, None, ("Completed", None)),
        ("card", "AuthorizeWithCapture", True, 202, None, ("Completed", None)),
        ("card", "Authorize", False, 422, "CheckoutSessionCanceled", ("Canceled", "Declined")),
        ("card", "Confirm", False, 200, None, ("Completed", None)),
        ("fault", "Authorize", True, 202, None, ("Completed", None)),
        ("fault", "Authorize", False, 422, "CheckoutSessionCanceled", ("Canceled", "Declined")),
        ("code", "Authorize", True, 202, None, ("Completed", None)),
        ("code", "Authorize", False, 400, "InvalidSandboxSimulationSpecified", ("Open", None)),
        ("code", "Confirm", True, 400, "InvalidSandboxSimulationSpecified", ("Open", None)),
    ],
    ids=lambda case: f"{case[0]}-{case[1]}-{'can' if case[2] else 'cannot'}-wait",
)
def test_a_pending_authorization_needs_can_handle_pending_authorization(
    api: Api, case: Pending
) -> None:
    """Docs sections 5.2 and 11: 202 only when the session set canHandlePendingAuthorization;
    without it the pending card (0701) or a pending fault fails the checkout, and the
    AuthorizationInitiated simulation string is refused."""
    source, intent, can_wait, status, reason, state = case
    payload = session_payload(intent=intent)
    payload["paymentDetails"]["canHandlePendingAuthorization"] = can_wait
    sid = api.create_session(payload)["checkoutSessionId"]
    outcome = "pending" if source == "card" else "success"
    api.control(f"sessions/{sid}/outcome", {"outcome": outcome})
    options: dict[str, Any] = {}
    if source == "fault":
        api.control("faults", {"operation": "CompleteCheckoutSession", "kind": "pending"})
    if source == "code":
        options["extra_signed"] = {"x-amz-pay-simulation-code": "AuthorizationInitiated"}
    response = complete(api, sid, **options)
    assert response.status_code == status, response.text
    if reason:
        assert response.json()["reasonCode"] == reason
    session = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert (session["statusDetails"]["state"], session["statusDetails"]["reasonCode"]) == state
    if status == 202:
        charge = api.call("GET", f"/charges/{session['chargeId']}").json()
        assert charge["statusDetails"]["state"] == "AuthorizationInitiated"
    if intent == "Confirm" and status == 200:
        assert session["chargeId"] is None


def _completed_permission(api: Api, payload: dict[str, Any]) -> str:
    sid = api.create_session(payload)["checkoutSessionId"]
    api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    response = complete(api, sid, {} if "paymentMethodOnFileMetadata" in payload else None)
    assert response.status_code == 200, response.text
    permission_id: str = response.json()["chargePermissionId"]
    return permission_id


def _timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "lifetime"),
    [
        ("one-time", timedelta(days=180)),
        ("one-time-extended", timedelta(days=395)),  # 13 months, give or take a day
        ("saved-wallet", None),
    ],
)
def test_charge_permissions_expire_on_the_simulator_clock(
    api: Api, kind: str, lifetime: timedelta | None
) -> None:
    """Docs section 5.1: a OneTime Charge Permission lasts 180 days (13 months with
    extendExpiration) and is then Closed with reason Expired; a saved wallet does not expire."""
    if kind == "saved-wallet":
        payload = setup_only_payload()
    else:
        payload = session_payload()
        payload["paymentDetails"]["extendExpiration"] = kind == "one-time-extended"
    permission_id = _completed_permission(api, payload)
    permission = api.call("GET", f"/chargePermissions/{permission_id}").json()
    if lifetime is None:
        assert permission["expirationTimestamp"] is None
    else:
        created = _timestamp(permission["creationTimestamp"])
        expires = _timestamp(permission["expirationTimestamp"])
        assert abs(expires - created - lifetime) <= timedelta(days=1)
    api.control("clock", {"advance_seconds": 179 * 86400})
    state = api.call("GET", f"/chargePermissions/{permission_id}").json()["statusDetails"]
    assert state["state"] == "Chargeable"
    api.control("clock", {"advance_seconds": 220 * 86400})  # 399 days in all
    details = api.call("GET", f"/chargePermissions/{permission_id}").json()["statusDetails"]
    if lifetime is None:
        assert details["state"] == "Chargeable"
        return
    assert details["state"] == "Closed"
    assert [r["reasonCode"] for r in details["reasons"]] == ["Expired"]
    refused = api.call(
        "POST",
        "/charges",
        {"chargePermissionId": permission_id, "chargeAmount": USD_14},
        idempotency_key="after-expiry",
    )
    assert (refused.status_code, refused.json()["reasonCode"]) == (
        422,
        "InvalidChargePermissionStatus",
    )


def test_a_one_time_permission_is_still_chargeable_just_before_180_days(api: Api) -> None:
    permission_id = _completed_permission(api, session_payload())
    api.control("clock", {"advance_seconds": 180 * 86400 - 60})
    details = api.call("GET", f"/chargePermissions/{permission_id}").json()["statusDetails"]
    assert details["state"] == "Chargeable"
    api.control("clock", {"advance_seconds": 120})
    details = api.call("GET", f"/chargePermissions/{permission_id}").json()["statusDetails"]
    assert (details["state"], details["reasons"][0]["reasonCode"]) == ("Closed", "Expired")
