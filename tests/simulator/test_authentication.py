"""The simulator authenticates like Amazon (docs section 1.12): tampering of any signed part,
wrong keys, salt/algorithm mismatch, stale or future dates and bad idempotency keys are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from amazonpay import signing
from tests.simulator.conftest import (
    LIVE_KEY_ID,
    OTHER_KEY_ID,
    PLAIN_KEY_ID,
    Api,
    session_payload,
)


def _send(
    api: Api, method: str, path: str, body: str, headers: dict[str, str]
) -> requests.Response:
    return api.http.request(method, api.base_url + path, data=body.encode(), headers=headers)


def _complete_request(api: Api, session_id: str) -> tuple[str, str, dict[str, str]]:
    path = f"/v2/checkoutSessions/{session_id}/complete"
    body = json.dumps({"chargeAmount": {"amount": "14.00", "currencyCode": "USD"}})
    return path, body, api.signed_headers("POST", path, body, idempotency_key="complete-1")


@pytest.mark.parametrize("algorithm", list(signing.Algorithm))
@pytest.mark.parametrize("trailing_slash", [False, True])
def test_both_algorithms_and_trailing_slash_are_accepted(
    api: Api, algorithm: signing.Algorithm, trailing_slash: bool
) -> None:
    api.algorithm = algorithm
    session = api.create_session(session_payload())
    resource = f"/checkoutSessions/{session['checkoutSessionId']}" + ("/" if trailing_slash else "")
    response = api.call("GET", resource)
    assert response.status_code == 200, response.text
    assert response.json()["checkoutSessionId"] == session["checkoutSessionId"]
    assert response.headers["x-amz-pay-request-id"]


@pytest.mark.parametrize(
    ("prefix", "key_id", "environment"),
    [
        ("/v2", "SANDBOX-AFVX7ULWSGBZ5535PCUQOY7B", "Sandbox"),
        ("/v2", LIVE_KEY_ID, "Live"),
        ("/sandbox/v2", PLAIN_KEY_ID, "Sandbox"),
        ("/live/v2", PLAIN_KEY_ID, "Live"),
        ("/live/v2", LIVE_KEY_ID, "Live"),
    ],
)
def test_environment_comes_from_path_or_key_prefix(
    api: Api, prefix: str, key_id: str, environment: str
) -> None:
    api.prefix, api.key_id = prefix, key_id
    session = api.create_session(session_payload())
    assert session["releaseEnvironment"] == environment


def test_iso_date_form_of_the_node_sdk_is_accepted(api: Api) -> None:
    iso = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    response = api.call(
        "POST", "/checkoutSessions", session_payload(), idempotency_key="k", date=iso
    )
    assert response.status_code == 201, response.text


def _tamper_body(headers: dict[str, str], body: str, path: str) -> tuple[dict[str, str], str, str]:
    return headers, body.replace("14.00", "1.00"), path


def _tamper_signed_header(headers: dict[str, str], body: str, path: str) -> Any:
    return {**headers, "x-amz-pay-region": "eu"}, body, path


def _tamper_path(headers: dict[str, str], body: str, path: str) -> Any:
    return headers, body, path + "/"


def _tamper_date(headers: dict[str, str], body: str, path: str) -> Any:
    earlier = datetime.now(UTC) - timedelta(seconds=30)
    return {**headers, "x-amz-pay-date": signing.format_amz_date(earlier)}, body, path


def _tamper_idempotency_key(headers: dict[str, str], body: str, path: str) -> Any:
    return {**headers, "x-amz-pay-idempotency-key": "complete-2"}, body, path


def _tamper_signature_bytes(headers: dict[str, str], body: str, path: str) -> Any:
    auth = headers["authorization"]
    head, signature = auth.rsplit("Signature=", 1)
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    return {**headers, "authorization": f"{head}Signature={flipped}"}, body, path


def _drop_signed_header(headers: dict[str, str], body: str, path: str) -> Any:
    return {k: v for k, v in headers.items() if k != "x-amz-pay-host"}, body, path


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_body,
        _tamper_signed_header,
        _tamper_path,
        _tamper_date,
        _tamper_idempotency_key,
        _tamper_signature_bytes,
        _drop_signed_header,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_tampered_requests_are_refused_with_403(
    api: Api, buyer_session: dict[str, Any], tamper: Any
) -> None:
    path, body, headers = _complete_request(api, buyer_session["checkoutSessionId"])
    headers, body, path = tamper(headers, body, path)
    response = _send(api, "POST", path, body, headers)
    assert response.status_code == 403, response.text
    assert response.json()["reasonCode"] == "InvalidRequestSignature"
    assert set(response.json()) == {"reasonCode", "message"}
    # Nothing was applied: the untampered request still completes the session.
    path, body, headers = _complete_request(api, buyer_session["checkoutSessionId"])
    assert _send(api, "POST", path, body, headers).status_code == 200


@pytest.mark.parametrize(
    ("sign_options", "status", "reason"),
    [
        ({"key_id": "SANDBOX-UNKNOWNKEY"}, 403, "InvalidRequestSignature"),
        ({"key_id": OTHER_KEY_ID}, 403, "InvalidRequestSignature"),  # registered, other key pair
        # PSS-V2 designation with a salt-20 signature and vice versa (section 1.1, strict salt).
        (
            {"algorithm": signing.Algorithm.PSS_V2, "salt_algorithm": signing.Algorithm.PSS},
            403,
            "InvalidRequestSignature",
        ),
        (
            {"algorithm": signing.Algorithm.PSS, "salt_algorithm": signing.Algorithm.PSS_V2},
            403,
            "InvalidRequestSignature",
        ),
        ({"date": "20991231T000000Z"}, 400, "InvalidHeaderValue"),
        ({"date": "tomorrow"}, 400, "InvalidHeaderValue"),
        ({"key_id": LIVE_KEY_ID}, 400, "InvalidRequest"),  # LIVE- key on the sandbox path
    ],
    ids=[
        "unknown-key",
        "other-key",
        "v2-with-salt-20",
        "v1-with-salt-32",
        "future",
        "garbage-date",
        "env-mismatch",
    ],
)
def test_authentication_errors(
    api: Api, sign_options: dict[str, Any], status: int, reason: str
) -> None:
    response = api.call(
        "POST",
        "/checkoutSessions",
        session_payload(),
        idempotency_key="k1",
        prefix="/sandbox/v2",
        **sign_options,
    )
    assert (response.status_code, response.json()["reasonCode"]) == (status, reason), response.text
    assert response.headers["x-amz-pay-request-id"]


def test_future_date_message_matches_amazon(api: Api) -> None:
    future = signing.format_amz_date(datetime.now(UTC) + timedelta(minutes=5))
    response = api.call("GET", "/checkoutSessions/x", date=future)
    assert response.status_code == 400
    assert response.json()["message"].endswith("should not be in future")


def test_dates_older_than_fifteen_minutes_are_refused(api: Api) -> None:
    stale = signing.format_amz_date(datetime.now(UTC) - timedelta(minutes=16))
    fresh = signing.format_amz_date(datetime.now(UTC) - timedelta(minutes=14))
    assert api.call("GET", "/checkoutSessions/x", date=stale).status_code == 400
    assert api.call("GET", "/checkoutSessions/x", date=fresh).status_code == 404


def test_a_stranger_key_signed_with_a_registered_id_is_refused(api: Api) -> None:
    response = api.call("GET", "/checkoutSessions/x", private_key=api.keys.stranger)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 400, "MissingHeader"),
        ({"authorization": "Bearer abc"}, 400, "InvalidHeaderValue"),
        (
            {"authorization": "AMZN-PAY-RSASSA-PSS-V3 PublicKeyId=x, SignedHeaders=a, Signature=A"},
            400,
            "InvalidHeaderValue",
        ),
    ],
)
def test_missing_or_malformed_authorization(
    api: Api, headers: dict[str, str], status: int, reason: str
) -> None:
    response = api.http.get(api.base_url + "/v2/checkoutSessions/x", headers=headers)
    assert (response.status_code, response.json()["reasonCode"]) == (status, reason)


def test_unsigned_date_is_refused(api: Api) -> None:
    path = "/v2/checkoutSessions/x"
    headers = {
        "accept": "application/json",
        "x-amz-pay-date": signing.format_amz_date(datetime.now(UTC)),
    }
    canonical = signing.canonical_request("GET", path, "", headers, ["accept"], "")
    to_sign = signing.string_to_sign(api.algorithm, canonical)
    headers["authorization"] = signing.authorization_header(
        api.algorithm, api.key_id, "accept", signing.sign(api.keys.private, to_sign, api.algorithm)
    )
    response = api.http.get(api.base_url + path, headers=headers)
    assert (response.status_code, response.json()["reasonCode"]) == (400, "MissingHeader")


@pytest.mark.parametrize(
    ("key", "signed", "status", "reason"),
    [
        (None, True, 400, "MissingHeader"),  # Create Checkout Session needs one
        ("a" * 33, True, 400, "InvalidHeaderValue"),
        ("bad key!", True, 400, "InvalidHeaderValue"),
        ("good-key_1", False, 400, "InvalidHeaderValue"),  # present but not signed
        ("a" * 32, True, 201, None),
    ],
)
def test_idempotency_key_rules(
    api: Api, key: str | None, signed: bool, status: int, reason: str | None
) -> None:
    response = api.call(
        "POST",
        "/checkoutSessions",
        session_payload(),
        idempotency_key=key,
        sign_idempotency_key=signed,
    )
    assert response.status_code == status, response.text
    if reason:
        assert response.json()["reasonCode"] == reason


@pytest.mark.parametrize(
    ("method", "resource", "payload"),
    [
        (
            "POST",
            "/charges",
            {"chargePermissionId": "S01-1", "chargeAmount": {"amount": 1, "currencyCode": "USD"}},
        ),
        (
            "POST",
            "/charges/S01-1-C1/capture",
            {"captureAmount": {"amount": 1, "currencyCode": "USD"}},
        ),
        (
            "POST",
            "/refunds",
            {"chargeId": "S01-1-C1", "refundAmount": {"amount": 1, "currencyCode": "USD"}},
        ),
    ],
)
def test_other_posts_that_require_an_idempotency_key(
    api: Api, method: str, resource: str, payload: dict[str, Any]
) -> None:
    response = api.call(method, resource, payload)
    assert (response.status_code, response.json()["reasonCode"]) == (400, "MissingHeader")


def test_complete_accepts_requests_with_and_without_a_key(
    api: Api, buyer_session: dict[str, Any]
) -> None:
    response = api.call(
        "POST",
        f"/checkoutSessions/{buyer_session['checkoutSessionId']}/complete",
        {"chargeAmount": {"amount": "14.00", "currencyCode": "USD"}},
    )
    assert response.status_code == 200, response.text


def _node_style_headers(
    api: Api, path: str, body: str, *, key: str, signed_list_case: str = "as-sent"
) -> dict[str, str]:
    """Headers signed the way the Node SDK signs them (docs section 1.5): names sorted
    case-insensitively, canonical lines lower-cased, SignedHeaders joined in the caller's case."""
    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "x-amz-pay-date": signing.format_amz_date(datetime.now(UTC)),
        "x-amz-pay-host": "pay-api.amazon.com",
        "x-amz-pay-region": "na",
        "X-Amz-Pay-Idempotency-Key": key,
    }
    names = sorted(headers, key=str.lower)
    signed_list = ";".join(names)
    line = signed_list if signed_list_case == "as-sent" else signed_list.lower()
    canonical = "\n".join(
        [
            "POST",
            path,
            "",
            "".join(f"{name.lower()}:{headers[name]}\n" for name in names),
            line,
            signing.payload_hash(body),
        ]
    )
    signature = signing.sign(
        api.keys.private, signing.string_to_sign(api.algorithm, canonical), api.algorithm
    )
    headers["authorization"] = signing.authorization_header(
        api.algorithm, api.key_id, signed_list, signature
    )
    return headers


@pytest.mark.parametrize(
    ("signed_list_case", "status"),
    [("as-sent", 201), ("lower-cased", 403)],
    ids=["node-sdk", "signed-another-list"],
)
def test_signed_headers_are_used_verbatim(api: Api, signed_list_case: str, status: int) -> None:
    """Docs section 1.12 step 4: a mixed-case `X-Amz-Pay-Idempotency-Key` in SignedHeaders is
    looked up case-insensitively, but the canonical request carries the list exactly as sent."""
    path = "/v2/checkoutSessions"
    body = json.dumps(session_payload())
    headers = _node_style_headers(api, path, body, key="node1", signed_list_case=signed_list_case)
    assert "X-Amz-Pay-Idempotency-Key" in headers["authorization"]
    response = _send(api, "POST", path, body, headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["reasonCode"] == "InvalidRequestSignature"
