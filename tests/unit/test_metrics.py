"""The client's observer sees every attempt, and the shop's metrics count what it reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import requests
import urllib3.exceptions
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from amazonpay import errors
from amazonpay.client import AmazonPayClient, CallRecord, RetryPolicy
from storefront.metrics import REGISTRY, observe_amazon_call

if TYPE_CHECKING:
    from conftest import FakeAmazon

API = "https://pay-api.amazon.com/sandbox/v2"
SESSION_ID = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc"
GET = f"{API}/checkoutSessions/{SESSION_ID}"
OK = (200, {"checkoutSessionId": SESSION_ID, "statusDetails": {"state": "Open"}}, {})
UNAVAILABLE = (503, {"reasonCode": "ServiceUnavailable", "message": "later"}, {})


def _refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def _observed(
    make_client: Callable[..., AmazonPayClient],
) -> tuple[AmazonPayClient, list[CallRecord]]:
    records: list[CallRecord] = []
    client = make_client(observer=records.append, retry=RetryPolicy(max_attempts=3))
    return client, records


def test_observer_sees_each_attempt_with_its_status_class_and_retry(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route(
        "GET",
        GET,
        UNAVAILABLE,
        (200, OK[1], {"x-amz-pay-request-id": "req-123"}),
    )
    client, records = _observed(make_client)

    client.get_checkout_session(SESSION_ID)

    assert [(r.operation, r.attempt, r.status, r.status_class, r.will_retry) for r in records] == [
        ("get_checkout_session", 1, 503, "5xx", True),
        ("get_checkout_session", 2, 200, "2xx", False),
    ]
    assert records[0].error == "ServiceError"
    assert records[1].error is None
    assert records[1].request_id == "req-123"
    assert all(r.duration >= 0 for r in records)


def test_observer_sees_no_response_as_status_class_none(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("GET", GET, _refused())
    client, records = _observed(make_client)

    with pytest.raises(errors.APIConnectionError):
        client.get_checkout_session(SESSION_ID)

    assert [(r.status, r.status_class, r.error, r.will_retry) for r in records] == [
        (None, "none", "ConnectionError", True),
        (None, "none", "ConnectionError", True),
        (None, "none", "ConnectionError", False),
    ]


def _sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_observed_calls_are_counted_by_operation_and_status_class(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("GET", GET, UNAVAILABLE, UNAVAILABLE, OK)
    client = make_client(observer=observe_amazon_call, retry=RetryPolicy(max_attempts=3))
    labels = {"operation": "get_checkout_session"}
    before = {
        "5xx": _sample("amazonpay_api_calls_total", {**labels, "status_class": "5xx"}),
        "2xx": _sample("amazonpay_api_calls_total", {**labels, "status_class": "2xx"}),
        "retries": _sample("amazonpay_api_retries_total", labels),
        "timed": _sample("amazonpay_api_call_duration_seconds_count", labels),
    }

    client.get_checkout_session(SESSION_ID)

    assert _sample("amazonpay_api_calls_total", {**labels, "status_class": "5xx"}) == (
        before["5xx"] + 2
    )
    assert _sample("amazonpay_api_calls_total", {**labels, "status_class": "2xx"}) == (
        before["2xx"] + 1
    )
    assert _sample("amazonpay_api_retries_total", labels) == before["retries"] + 2
    assert _sample("amazonpay_api_call_duration_seconds_count", labels) == before["timed"] + 3


def test_metric_labels_are_names_from_our_code_only() -> None:
    """Every label name is one we chose; their values are checked on the wire by integration."""
    families = text_string_to_metric_families(generate_latest(REGISTRY).decode())
    allowed = {"operation", "status_class", "endpoint", "method", "checkout_kind", "outcome", "le"}
    for family in families:
        for sample in family.samples:
            assert set(sample.labels) <= allowed, (family.name, sample.labels)
