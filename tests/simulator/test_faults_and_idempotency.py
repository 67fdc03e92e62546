"""Idempotent replay (docs section 7), sandbox throttling (section 9) and the fault-injection
control API: status answers, dropped connections, delays, pending authorizations, the log."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest
import requests

from tests.simulator.conftest import (
    OTHER_KEY_ID,
    USD_14,
    Api,
    complete,
    create_charge,
    saved_wallet,
    session_payload,
)


def _complete(
    api: Api, sid: str, key: str | None = "done-1", body: Any = None
) -> requests.Response:
    return complete(api, sid, body, key)


def test_same_key_same_request_replays_the_stored_response(api: Api) -> None:
    first = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="same")
    second = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="same")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert first.headers["x-amz-pay-request-id"] != second.headers["x-amz-pay-request-id"]


def test_same_key_with_a_different_body_is_a_duplicate(api: Api) -> None:
    api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="dup")
    other = api.call("POST", "/checkoutSessions", session_payload("15.00"), idempotency_key="dup")
    assert (other.status_code, other.json()["reasonCode"]) == (400, "DuplicateIdempotencyKey")


def test_keys_are_scoped_per_public_key_id(api: Api) -> None:
    first = api.create_session(session_payload(), key="shared")
    api.key_id = OTHER_KEY_ID
    second = api.call(
        "POST",
        "/checkoutSessions",
        session_payload("15.00"),
        idempotency_key="shared",
        private_key=api.keys.other,
    )
    assert second.status_code == 201, second.text
    assert second.json()["checkoutSessionId"] != first["checkoutSessionId"]


def test_complete_retry_with_the_same_key_replays_200(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    first = _complete(api, sid)
    again = _complete(api, sid)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json()
    # Without the key, a second Complete is the status error of section 5.2.
    assert _complete(api, sid, key=None).status_code == 422


@pytest.mark.parametrize(
    "case",
    [
        ({"kind": "status", "status": 503}, 503, "ServiceUnavailable", None),
        ({"kind": "status", "status": 500}, 500, "InternalServerError", None),
        ({"kind": "status", "status": 429, "retry_after": 1}, 429, "TooManyRequests", "1"),
    ],
    ids=["503", "500", "429"],
)
def test_status_faults_answer_without_applying(
    api: Api, buyer_session: dict[str, Any], case: tuple[dict[str, Any], int, str, str | None]
) -> None:
    fault, status, reason, retry_after = case
    sid = buyer_session["checkoutSessionId"]
    created = api.control("faults", {"operation": "CompleteCheckoutSession", "count": 1, **fault})
    assert created.status_code == 201, created.text
    response = _complete(api, sid)
    assert (response.status_code, response.json()["reasonCode"]) == (status, reason)
    assert response.headers.get("Retry-After") == retry_after
    got = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert got["statusDetails"]["state"] == "Open"
    # The fault was used up; the retry with the same key applies the change now.
    assert _complete(api, sid).status_code == 200


def test_fault_scoped_to_one_session_leaves_others_alone(api: Api) -> None:
    a = api.create_session(session_payload(), key="a")["checkoutSessionId"]
    b = api.create_session(session_payload(), key="b")["checkoutSessionId"]
    for sid in (a, b):
        api.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    api.control(
        "faults",
        {
            "operation": "CompleteCheckoutSession",
            "status": 503,
            "checkout_session_id": a,
            "count": 5,
        },
    )
    assert _complete(api, b, key="kb").status_code == 200
    assert _complete(api, a, key="ka").status_code == 503


def test_drop_applies_the_change_and_sends_no_response(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    api.control("faults", {"operation": "CompleteCheckoutSession", "kind": "drop"})
    with pytest.raises(requests.ConnectionError) as caught:
        _complete(api, sid)
    cause = repr(caught.value)
    assert "RemoteDisconnected" in cause or "ConnectionReset" in cause, cause
    got = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert got["statusDetails"]["state"] == "Completed"
    replay = _complete(api, sid)
    assert replay.status_code == 200
    assert replay.json()["chargeId"] == got["chargeId"]
    log = api.http.get(api.base_url + "/_simulator/requests").json()
    completes = [e for e in log if e["operation"] == "CompleteCheckoutSession"]
    assert [e["fault"] for e in completes] == ["drop", "replay"]


def test_drop_is_seen_as_a_closed_connection_at_the_http_level(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    api.control("faults", {"operation": "GetCheckoutSession", "kind": "drop"})
    path = f"/v2/checkoutSessions/{sid}"
    headers = api.signed_headers("GET", path, "")
    host, port = api.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", path, headers=headers)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    connection.close()


def test_delay_applies_and_answers_late(api: Api, buyer_session: dict[str, Any]) -> None:
    sid = buyer_session["checkoutSessionId"]
    api.control(
        "faults", {"operation": "CompleteCheckoutSession", "kind": "delay", "delay_ms": 400}
    )
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        api.http.request(
            "POST",
            f"{api.base_url}/v2/checkoutSessions/{sid}/complete",
            data=json.dumps({"chargeAmount": USD_14}),
            headers=api.signed_headers(
                "POST",
                f"/v2/checkoutSessions/{sid}/complete",
                json.dumps({"chargeAmount": USD_14}),
            ),
            timeout=0.15,
        )
    time.sleep(0.4)
    got = api.call("GET", f"/checkoutSessions/{sid}").json()
    assert got["statusDetails"]["state"] == "Completed"
    assert time.monotonic() - started >= 0.4


def test_pending_fault_makes_complete_answer_202(api: Api, buyer_session: dict[str, Any]) -> None:
    sid = buyer_session["checkoutSessionId"]
    api.control("faults", {"operation": "CompleteCheckoutSession", "kind": "pending"})
    response = _complete(api, sid)
    assert response.status_code == 202
    charge = api.call("GET", f"/charges/{response.json()['chargeId']}").json()
    assert charge["statusDetails"]["state"] == "AuthorizationInitiated"


@pytest.mark.parametrize(
    "fault",
    [
        {"operation": "Nope", "kind": "status"},
        {"operation": "GetCharge", "kind": "explode"},
        {"operation": "GetCharge", "kind": "pending"},
        {"operation": "GetCharge", "count": 0},
        {"operation": "GetCharge", "status": 200},
        {"operation": "GetCharge", "delay_ms": "soon"},
    ],
)
def test_bad_fault_definitions_are_refused(api: Api, fault: dict[str, Any]) -> None:
    response = api.control("faults", fault)
    assert response.status_code == 400
    assert response.json()["reasonCode"] == "InvalidParameterValue"


def test_request_log_and_reset(api: Api, buyer_session: dict[str, Any]) -> None:
    sid = buyer_session["checkoutSessionId"]
    _complete(api, sid, key="logged")
    log = api.http.get(api.base_url + "/_simulator/requests").json()
    assert [e["operation"] for e in log] == ["CreateCheckoutSession", "CompleteCheckoutSession"]
    entry = log[-1]
    assert entry["method"] == "POST"
    assert entry["path"] == f"/v2/checkoutSessions/{sid}/complete"
    assert entry["checkout_session_id"] == sid
    assert entry["idempotency_key"] == "logged"
    assert entry["status"] == 200
    assert entry["timestamp"]
    assert log[0]["checkout_session_id"] == sid
    api.control("faults", {"operation": "GetCharge", "count": 3})
    assert api.control("reset").status_code == 200
    assert api.http.get(api.base_url + "/_simulator/requests").json() == []
    assert api.http.get(api.base_url + "/_simulator/faults").json() == []
    assert api.call("GET", f"/checkoutSessions/{sid}").status_code == 200  # data kept
    api.control("reset", {"data": True})
    assert api.call("GET", f"/checkoutSessions/{sid}").status_code == 404


def test_health(api: Api) -> None:
    assert api.http.get(api.base_url + "/_simulator/health").json() == {"status": "ok"}


def test_throttling_is_off_by_default_and_follows_the_sandbox_quota(api: Api) -> None:
    statuses = [_complete(api, "x", key=None).status_code for _ in range(5)]
    assert statuses == [404] * 5
    api.control("throttling", {"enabled": True})
    statuses = [_complete(api, "x", key=None).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]  # Complete: burst 2, restore 1/s
    throttled = _complete(api, "x", key=None)
    assert throttled.json()["reasonCode"] == "TooManyRequests"
    assert throttled.headers["Retry-After"] == "1"
    # Other operations have their own buckets.
    assert api.call("GET", "/checkoutSessions/x").status_code == 404
    time.sleep(1.05)
    assert _complete(api, "x", key=None).status_code == 404


def test_concurrent_completes_with_one_key_complete_once(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    sid = buyer_session["checkoutSessionId"]
    results: list[requests.Response] = []

    def worker() -> None:
        results.append(
            Api(api.base_url, api.keys).call(
                "POST",
                f"/checkoutSessions/{sid}/complete",
                {"chargeAmount": USD_14},
                idempotency_key="race",
            )
        )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 8
    assert len({r.json()["chargeId"] for r in results}) == 1


def test_control_api_can_be_switched_off(keys: Any) -> None:
    from amazonpay.simulator import Simulator, serve_in_thread
    from tests.simulator.conftest import public_keys

    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), control_api=False))
    try:
        assert requests.get(handle.base_url + "/_simulator/health", timeout=5).status_code == 404
        response = requests.post(handle.base_url + "/_simulator/faults", json={}, timeout=5)
        assert response.status_code == 404
        assert (
            requests.get(handle.base_url + "/_simulator/sns-cert.pem", timeout=5).status_code == 200
        )
    finally:
        handle.shutdown()


# -- idempotent replay of the money-moving POSTs (docs section 7) ------------------------------


def _money_call(api: Api, operation: str, target: str, amount: str, key: str) -> requests.Response:
    price = {"amount": amount, "currencyCode": "USD"}
    if operation == "CreateCharge":
        body = {"chargePermissionId": target, "chargeAmount": price, "chargeInitiator": "MITU"}
        return api.call("POST", "/charges", body, idempotency_key=key)
    if operation == "CaptureCharge":
        return api.call(
            "POST", f"/charges/{target}/capture", {"captureAmount": price}, idempotency_key=key
        )
    body = {"chargeId": target, "refundAmount": price}
    return api.call("POST", "/refunds", body, idempotency_key=key)


def _target(api: Api, operation: str) -> str:
    """A saved wallet for Create Charge, an Authorized charge for Capture, a captured one for
    Create Refund."""
    wallet = saved_wallet(api)
    if operation == "CreateCharge":
        return wallet
    capture_now = operation == "CreateRefund"
    response = create_charge(api, wallet, "10.00", key="setup", captureNow=capture_now)
    charge_id: str = response.json()["chargeId"]
    return charge_id


@pytest.mark.parametrize("operation", ["CreateCharge", "CaptureCharge", "CreateRefund"])
def test_same_key_same_body_replays_and_a_different_body_is_a_duplicate(
    api: Api, operation: str
) -> None:
    target = _target(api, operation)
    first = _money_call(api, operation, target, "4.00", "money-1")
    assert first.status_code in (200, 201), first.text
    replay = _money_call(api, operation, target, "4.00", "money-1")
    assert (replay.status_code, replay.json()) == (first.status_code, first.json())
    other = _money_call(api, operation, target, "5.00", "money-1")
    assert (other.status_code, other.json()["reasonCode"]) == (400, "DuplicateIdempotencyKey")
    log = api.http.get(api.base_url + "/_simulator/requests").json()
    calls = [e for e in log if e["operation"] == operation and e["idempotency_key"] == "money-1"]
    assert [e["fault"] for e in calls] == [None, "replay", None]
    if operation == "CreateRefund":  # applied once: 4.00 refunded, not 8.00
        charge = api.call("GET", f"/charges/{target}").json()
        assert charge["refundedAmount"]["amount"] == "4.00"


def test_a_replay_answers_what_was_answered_then(api: Api) -> None:
    """Amazon keeps the first answer for good (docs section 7): a declined Create Charge replays
    as declined after the script is used up, an authorized one as Authorized after capture."""
    wallet = saved_wallet(api)
    api.control(f"charge-permissions/{wallet}/next-charges", {"outcome": "HardDeclined"})
    declined = create_charge(api, wallet, key="declined")
    assert declined.json()["reasonCode"] == "HardDeclined"
    assert create_charge(api, wallet, key="declined").json() == declined.json()
    authorized = create_charge(api, wallet, key="authorized")
    charge_id = authorized.json()["chargeId"]
    api.call(
        "POST",
        f"/charges/{charge_id}/capture",
        {"captureAmount": {"amount": "14.00", "currencyCode": "USD"}},
        idempotency_key="cap",
    )
    again = create_charge(api, wallet, key="authorized")
    assert again.json()["statusDetails"]["state"] == "Authorized"
    assert again.json()["chargeId"] == charge_id
