"""`GET /metrics` (docs/contract.md): Prometheus text, names from our code in labels, never buyer
data; the same totals from every gunicorn worker; an answer even without a database."""

from __future__ import annotations

import re
import socket
import time
from decimal import Decimal
from pathlib import Path

import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness, is_postgres
from tests.support.servers import KeyPair, app_environment, start_gunicorn, stopping

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Label values we put there: endpoint names, operations, HTTP methods, status classes, states.
NAME = re.compile(r"\A(?:[a-z][a-z0-9_.]*|[A-Z]+|[1-5]xx|[0-9.e+-]+|\+Inf)\Z")  # le: numbers


def scrape(client: FlaskClient) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    return text, parse(text)


def scrape_url(base_url: str) -> Samples:
    response = requests.get(f"{base_url}/metrics", timeout=5)
    assert response.status_code == 200
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_wallet_setup_and_a_checkout_show_up_without_buyer_data(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    _, before = scrape(buyer.client)
    wallet = buyer.pay("/wallet", "1111")
    buyer.add_to_cart("mug")
    checkout = buyer.pay("/checkout", "1111")
    assert wallet.response.status_code == checkout.response.status_code == 303

    text, after = scrape(buyer.client)

    for operation in ("get_checkout_session", "complete_checkout_session"):
        calls = "amazonpay_api_calls_total"
        grown = value(after, calls, operation=operation, status_class="2xx") - value(
            before, calls, operation=operation, status_class="2xx"
        )
        assert grown >= 2, operation
        assert value(
            after, "amazonpay_api_call_duration_seconds_count", operation=operation
        ) > value(before, "amazonpay_api_call_duration_seconds_count", operation=operation)
    returns = "storefront_request_duration_seconds_count"
    labels = {"endpoint": "checkout.checkout_return", "method": "GET", "status_class": "3xx"}
    assert value(after, returns, **labels) - value(before, returns, **labels) == 2
    for kind in ("wallet_setup", "one_time"):
        outcome = {"checkout_kind": kind, "outcome": "success"}
        grown = value(after, "storefront_checkout_returns_total", **outcome) - value(
            before, "storefront_checkout_returns_total", **outcome
        )
        assert grown == 1, kind
    assert value(after, "storefront_undecided_claims") == 0
    assert ("storefront_undecided_claims", frozenset()) in after

    # No ids, references, amounts or URLs: anywhere in the text, nor as any label value.
    secrets = [wallet.checkout_session_id, checkout.checkout_session_id]
    secrets += re.findall(r"ref=([A-Za-z0-9_-]{22})", wallet.return_url + checkout.return_url)
    for secret in secrets:
        assert secret not in text
    amount = Decimal(checkout.payload["paymentDetails"]["chargeAmount"]["amount"])
    for (name, labels_seen), _ in after.items():
        for label, seen in labels_seen:
            assert NAME.match(seen), (name, label, seen)
            assert seen != str(amount)
            assert "/" not in seen


def test_amazon_5xx_and_retries_are_counted(buyer: Buyer, simulator: SimulatorHarness) -> None:
    _, before = scrape(buyer.client)
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")
    simulator.fault("CompleteCheckoutSession", kind="status", status=503, count=2)

    assert buyer.client.get(return_url).status_code == 303

    _, after = scrape(buyer.client)
    operation = {"operation": "complete_checkout_session"}
    failed = {**operation, "status_class": "5xx"}
    calls = "amazonpay_api_calls_total"
    assert value(after, calls, **failed) - value(before, calls, **failed) == 2
    retries = "amazonpay_api_retries_total"
    assert value(after, retries, **operation) - value(before, retries, **operation) == 2


def test_metrics_answer_without_a_database(
    app_factory: AppFactory, database_url: str, tmp_path: Path
) -> None:
    unreachable = (
        "postgresql://postgres@127.0.0.1:1/shop"
        if is_postgres(database_url)
        else f"sqlite:///{tmp_path / 'missing-folder' / 'shop.db'}"
    )
    client = app_factory(database_url=unreachable).test_client()
    assert client.get("/healthz").status_code == 503

    text, samples = scrape(client)

    assert "storefront_undecided_claims " not in text
    assert ("storefront_undecided_claims", frozenset()) not in samples
    assert "# TYPE amazonpay_api_calls_total counter" in text


def test_every_gunicorn_worker_reports_the_totals_of_all(
    key_pair: KeyPair, simulator: SimulatorHarness, tmp_path: Path
) -> None:
    env = app_environment(
        keys=key_pair,
        simulator_url=simulator.base_url,
        database_url=f"sqlite:///{tmp_path / 'shop.db'}",
    )
    server = start_gunicorn(env=env, log_dir=tmp_path / "logs", workers=2, threads=1)
    with stopping(server):
        healthz = {"endpoint": "shop.healthz", "method": "GET", "status_class": "2xx"}
        name = "storefront_request_duration_seconds_count"
        first = value(scrape_url(server.base_url), name, **healthz)
        # A request sent by halves keeps one sync worker busy, so the other answers the rest:
        # both workers have counted some requests, and each scrape must show all of them.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)
            for _ in range(10):
                assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
            slow.sendall(b"Connection: close\r\n\r\n")
            assert slow.recv(64).startswith(b"HTTP/1.1 200")
        seen = {value(scrape_url(server.base_url), name, **healthz) for _ in range(6)}
        assert seen == {first + 11}
