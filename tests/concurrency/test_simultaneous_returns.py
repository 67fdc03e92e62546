"""Many simultaneous returns for one checkout session complete it exactly once.

Refresh, double click, two tabs, or two app instances behind a load balancer: every request for
the same `amazonCheckoutSessionId` must end on the same outcome, and Amazon must see one Complete.
Each case runs against a real deployment (gunicorn, 2 workers x 4 threads) on SQLite, on
PostgreSQL, and as two app instances sharing one PostgreSQL database.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests

from amazonpay.client import AmazonPayClient
from tests.support.buyer import (
    AmazonReturn,
    HttpBuyer,
    add_fault,
    clear_faults,
    page_outcome,
    simulator_requests,
)
from tests.support.servers import Deployment, KeyPair

SIMULTANEOUS_PER_INSTANCE = 8
COMPLETE_DELAY_MS = 600  # the winner's Complete is slow, so every other request arrives during it
VISIT_TIMEOUT = 60.0

_CHARGE_PERMISSION = re.compile(r'data-testid="charge-permission-id">([^<]+)<')


@dataclass(frozen=True)
class Visit:
    statuses: tuple[int, ...]  # every response status, redirects first
    final_path: str
    outcome: str
    charge_permission_id: str | None
    seconds: float


def visit(url: str, cookies: Mapping[str, str], barrier: threading.Barrier | None) -> Visit:
    with requests.Session() as http:
        http.cookies.update(cookies)
        if barrier is not None:
            barrier.wait(timeout=VISIT_TIMEOUT)
        started = time.monotonic()
        response = http.get(url, timeout=VISIT_TIMEOUT)
    found = _CHARGE_PERMISSION.search(response.text)
    return Visit(
        statuses=(*(r.status_code for r in response.history), response.status_code),
        final_path=urlsplit(response.url).path,
        outcome=page_outcome(response),
        charge_permission_id=found.group(1) if found else None,
        seconds=round(time.monotonic() - started, 2),
    )


def visit_all_at_once(urls: list[str], cookies: Mapping[str, str]) -> list[Visit]:
    """GET every URL from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(urls))
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        futures = [pool.submit(visit, url, cookies, barrier) for url in urls]
        return [future.result(timeout=VISIT_TIMEOUT * 2) for future in futures]


def complete_requests(simulator_url: str, checkout_session_id: str) -> list[dict[str, object]]:
    return [
        entry
        for entry in simulator_requests(simulator_url, checkout_session_id)
        if entry["operation"] == "CompleteCheckoutSession"
    ]


@pytest.fixture
def buyer(deployment: Deployment) -> Iterator[HttpBuyer]:
    http_buyer = HttpBuyer(deployment.shop_urls[0], deployment.simulator_url)
    yield http_buyer
    http_buyer.close()


def return_urls(
    deployment: Deployment, amazon_return: AmazonReturn, per_instance: int
) -> list[str]:
    """The same return URL, `per_instance` times on every app instance, interleaved."""
    return [
        amazon_return.on(shop_url) for _ in range(per_instance) for shop_url in deployment.shop_urls
    ]


@pytest.mark.parametrize("wallet", [False, True], ids=["one-time", "wallet-setup"])
def test_simultaneous_returns_complete_once_and_agree(
    deployment: Deployment, buyer: HttpBuyer, wallet: bool
) -> None:
    amazon_return = buyer.checkout("success", wallet=wallet)
    session_id = amazon_return.checkout_session_id
    for operation in ("GetCheckoutSession", "CompleteCheckoutSession"):
        add_fault(
            deployment.simulator_url,
            operation=operation,
            kind="delay",
            delay_ms=COMPLETE_DELAY_MS,
            checkout_session_id=session_id,
        )

    urls = return_urls(deployment, amazon_return, SIMULTANEOUS_PER_INSTANCE)
    visits = visit_all_at_once(urls, buyer.http.cookies.get_dict())

    summary = [(v.statuses, v.final_path, v.outcome, v.seconds) for v in visits]
    assert all(v.outcome == "success" for v in visits), (summary, deployment.logs())
    assert {v.final_path for v in visits} == {f"/checkout/result/{amazon_return.reference}"}
    assert all(v.statuses[0] in (302, 303) for v in visits), summary  # post/redirect/get
    permission_ids = {v.charge_permission_id for v in visits}
    assert len(permission_ids) == 1, permission_ids
    assert None not in permission_ids

    completes = complete_requests(deployment.simulator_url, session_id)
    assert len(completes) == 1, (completes, deployment.logs())
    assert completes[0]["status"] == 200
    if wallet:
        wallet_page = buyer.get("/wallet").text
        assert _CHARGE_PERMISSION.findall(wallet_page) == list(permission_ids)


def signed_session_state(
    keys: KeyPair, simulator_url: str, checkout_session_id: str
) -> tuple[str, str | None]:
    """Ask the simulator as the merchant (signed Get Checkout Session): state, permission id."""
    client = AmazonPayClient(
        public_key_id=keys.key_id,
        private_key=keys.private_key_path.read_bytes(),
        endpoint=simulator_url,
    )
    try:
        session = client.get_checkout_session(checkout_session_id)
    finally:
        client.close()
    return session.state, session.charge_permission_id


def test_lost_complete_response_is_confirmed_then_reconciled(
    deployment: Deployment, buyer: HttpBuyer, merchant_keys: KeyPair
) -> None:
    amazon_return = buyer.checkout("success")
    session_id = amazon_return.checkout_session_id
    # Every Complete is applied by Amazon but its response never arrives (retries included).
    add_fault(
        deployment.simulator_url,
        operation="CompleteCheckoutSession",
        kind="drop",
        count=50,
        checkout_session_id=session_id,
    )
    cookies = buyer.http.cookies.get_dict()

    first = visit(amazon_return.return_url, cookies, None)
    assert first.outcome == "pending", (first, deployment.logs())  # "being confirmed"
    dropped = complete_requests(deployment.simulator_url, session_id)
    assert dropped, "the app never tried to complete the session"
    assert {e["fault"] for e in dropped} == {"drop"}
    idempotency_keys = {e["idempotency_key"] for e in dropped}
    assert len(idempotency_keys) == 1, idempotency_keys  # every retry: the same key
    state, permission_id = signed_session_state(merchant_keys, deployment.simulator_url, session_id)
    assert state == "Completed"  # the money moved although the shop never heard back
    assert permission_id

    # The page refreshes itself (and the buyer opens more tabs, on every instance) while
    # Complete still loses its responses: reconciling must read the session, not complete again.
    refreshes = visit_all_at_once(return_urls(deployment, amazon_return, 2), cookies)
    assert {v.outcome for v in refreshes} <= {"pending", "success"}, refreshes
    deadline = time.monotonic() + 20
    seen = [v.outcome for v in refreshes]
    last = refreshes[-1]
    while "success" not in seen[-1:] and time.monotonic() < deadline:
        time.sleep(0.3)
        last = visit(amazon_return.on(deployment.shop_urls[-1]), cookies, None)
        seen.append(last.outcome)
    assert seen[-1] == "success", (seen, deployment.logs())
    assert set(seen) <= {"pending", "success"}, seen  # never a failure for money that moved
    assert {v.charge_permission_id for v in [*refreshes, last] if v.outcome == "success"} == {
        permission_id
    }
    all_completes = complete_requests(deployment.simulator_url, session_id)
    assert {e["idempotency_key"] for e in all_completes} == idempotency_keys  # one completion

    # Decided: refreshing shows the same success and calls Amazon no more.
    clear_faults(deployment.simulator_url)
    again = visit(amazon_return.on(deployment.shop_urls[0]), cookies, None)
    assert again.outcome == "success"
    assert again.charge_permission_id == permission_id
    assert simulator_requests(deployment.simulator_url, session_id) == []
