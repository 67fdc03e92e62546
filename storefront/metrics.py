"""Prometheus metrics and `GET /metrics` (docs/contract.md): what the shop and Amazon are doing.

Under gunicorn with `PROMETHEUS_MULTIPROC_DIR` set (gunicorn.conf.py does it) every worker writes
its counts to files there and a scrape adds them up; without it one in-process registry is used.
Labels hold names from our own code only (endpoints, operations, states): never ids or amounts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from amazonpay.client import CallRecord
from storefront.checkout import ReturnOutcome
from storefront.db.schema import checkout_claims
from storefront.states import ClaimState
from storefront.web import shop

__all__ = [
    "BACKLOG_COUNT_LIMIT",
    "ENDPOINT",
    "REGISTRY",
    "install_metrics",
    "observe_amazon_call",
    "record_return",
]

ENDPOINT = "metrics"
# The backlog gauge counts at most this many rows, so a scrape stays cheap however far behind
# reconciliation is; at the cap the alert has long fired anyway.
BACKLOG_COUNT_LIMIT = 10_000

# Our metrics live in their own registry: a scrape shows exactly these (plus the backlog).
REGISTRY = CollectorRegistry(auto_describe=True)

RETURNS = Counter(
    "storefront_checkout_returns",
    "Buyers' returns from Amazon Pay by checkout kind and outcome shown.",
    ["checkout_kind", "outcome"],
    registry=REGISTRY,
)
AMAZON_CALLS = Counter(
    "amazonpay_api_calls",
    "Amazon Pay API call attempts by operation and HTTP status class (none: no response).",
    ["operation", "status_class"],
    registry=REGISTRY,
)
AMAZON_RETRIES = Counter(
    "amazonpay_api_retries",
    "Amazon Pay API attempts that are followed by another attempt of the same call.",
    ["operation"],
    registry=REGISTRY,
)
AMAZON_LATENCY = Histogram(
    "amazonpay_api_call_duration_seconds",
    "Time of one Amazon Pay API attempt, from sending to the whole answer (or the error).",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "storefront_request_duration_seconds",
    "Time to answer a request, by Flask endpoint (not URL), method and status class.",
    ["endpoint", "method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

_RETURN_ENDPOINT = "checkout.checkout_return"
# Any other method is a client's invention: one label value for all of them, not one each.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# ledger.undecided's notion of waiting: pending, or claimed by a worker whose lease ran out.
_UNDECIDED = (ClaimState.CLAIMED, ClaimState.PENDING)


def observe_amazon_call(record: CallRecord) -> None:
    """The AmazonPayClient observer: one call per attempt."""
    AMAZON_CALLS.labels(record.operation, record.status_class).inc()
    AMAZON_LATENCY.labels(record.operation).observe(record.duration)
    if record.will_retry:
        AMAZON_RETRIES.labels(record.operation).inc()


def record_return(outcome: ReturnOutcome) -> None:
    RETURNS.labels(outcome.checkout_kind.value, outcome.kind.value).inc()


class _Backlog(Collector):
    """Undecided claims waiting for reconciliation, counted when scraped (absent if no database)."""

    def collect(self) -> Iterable[Metric]:
        services = shop()
        if not services.schema.ready():
            return []
        cc = checkout_claims.c
        now = datetime.now(UTC)
        waiting = (
            select(cc.operation_key)
            .where(cc.status.in_(_UNDECIDED))
            .where(cc.lease_expires_at.is_(None) | (cc.lease_expires_at <= now))
            .limit(BACKLOG_COUNT_LIMIT)
            .subquery()
        )
        try:
            with services.store.engine.connect() as conn:
                count = conn.execute(select(func.count()).select_from(waiting)).scalar_one()
        except SQLAlchemyError:
            # The database is down: say nothing rather than a wrong zero (alert on absent()).
            return []
        gauge = GaugeMetricFamily(
            "storefront_undecided_claims",
            "Checkout claims waiting for reconciliation (pending, or claimed with a lapsed"
            f" lease); counted up to {BACKLOG_COUNT_LIMIT}.",
        )
        gauge.add_metric([], count)
        return [gauge]


def _scrape() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker's files, this one's included: the same totals whichever worker answers.
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Shared())
    registry.register(_Backlog())
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


class _Shared(Collector):
    """This process's own metrics (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def install_metrics(app: Flask) -> None:
    """Serve `GET /metrics` and time every request; record each return's outcome."""
    app.add_url_rule("/metrics", ENDPOINT, _scrape, methods=["GET"])

    def _start_clock() -> None:
        g.metrics_started = time.perf_counter()

    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            method = request.method if request.method in _METHODS else "other"
            REQUEST_LATENCY.labels(
                request.endpoint or "none", method, f"{response.status_code // 100}xx"
            ).observe(time.perf_counter() - started)
        outcome = g.get("return_outcome")
        if request.endpoint == _RETURN_ENDPOINT and isinstance(outcome, ReturnOutcome):
            record_return(outcome)
        return response

    # First of the before_request functions, so requests the guards refuse are timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_clock)
    app.after_request(_observe)
