"""A stopped PostgreSQL never stops the shop (real gunicorn, real PostgreSQL, the simulator).

Pages answer the 503 page while it is down, a worker that dies meanwhile comes back without
its database, and the same server serves again once PostgreSQL is back, without a restart.
Money that Amazon moved while our database was away is confirmed once it is back, completed once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.outages.conftest import (
    OutagePostgres,
    StartShop,
    healthy,
    wait_for,
    worker_pids,
)
from tests.support.buyer import HttpBuyer, add_fault, page_outcome, simulator_requests
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.postgres

SAFE = "Your payment is safe and will be confirmed"
FAILED = "was not successful"


NewBuyer = Callable[[str], HttpBuyer]


@pytest.fixture
def buyer_factory(simulator: ServerProcess) -> Iterator[NewBuyer]:
    buyers: list[HttpBuyer] = []

    def make(shop_url: str) -> HttpBuyer:
        buyer = HttpBuyer(shop_url, simulator.base_url)
        buyers.append(buyer)
        return buyer

    yield make
    for buyer in buyers:
        buyer.close()


def completes(simulator_url: str, session_id: str) -> list[dict[str, object]]:
    return [
        entry
        for entry in simulator_requests(simulator_url, session_id)
        if entry["operation"] == "CompleteCheckoutSession"
    ]


def assert_unavailable(response: requests.Response, *, returning: bool) -> None:
    assert response.status_code == 503, response.text[:300]
    assert 'data-testid="unavailable"' in response.text
    assert response.headers["Retry-After"] == "5"
    assert FAILED not in response.text
    assert (SAFE in response.text) is returning


def refresh_until_decided(buyer: HttpBuyer, url: str, timeout: float) -> list[str]:
    """Refresh the return URL as its page does (faster) until it is not pending or down."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = buyer.get(url)
        seen.append("unavailable" if response.status_code == 503 else page_outcome(response))
        if seen[-1] not in ("pending", "unavailable"):
            break
        time.sleep(0.5)
    return seen


def test_a_worker_killed_while_the_database_is_down_serves_once_it_is_back(
    outage_postgres: OutagePostgres,
    fresh_database: str,
    start_shop: StartShop,
    simulator: ServerProcess,
    buyer_factory: NewBuyer,
) -> None:
    shop = start_shop(fresh_database, workers=2, threads=2)
    buyer = buyer_factory(shop.base_url)
    amazon_return = buyer.checkout("success")  # paid at Amazon; not back at the shop yet
    master = shop.process.pid

    with outage_postgres.stopped():
        assert requests.get(shop.base_url + "/healthz", timeout=10).status_code == 503
        assert_unavailable(buyer.get("/wallet"), returning=False)
        assert_unavailable(buyer.get(amazon_return.return_url), returning=True)
        assert buyer.get("/").status_code == 200

        victim = worker_pids(shop)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in worker_pids(shop) and len(worker_pids(shop)) == 2,
            timeout=30,
            what="gunicorn replaced the killed worker",
        )
        # The new worker booted without its database and answers like the old one.
        for _ in range(4):
            assert_unavailable(buyer.get(amazon_return.return_url), returning=True)
        assert completes(simulator.base_url, amazon_return.checkout_session_id) == []

    took = wait_for(lambda: healthy(shop.base_url), timeout=20, what="healthz 200 again")
    assert all(healthy(shop.base_url) for _ in range(6))  # both workers
    seen = refresh_until_decided(buyer, amazon_return.return_url, timeout=20)

    assert seen[-1] == "success", (seen, shop.log_tail())
    assert shop.process.poll() is None
    assert shop.process.pid == master  # the same server, never restarted
    assert len(completes(simulator.base_url, amazon_return.checkout_session_id)) == 1
    assert took < 10, took


def test_the_database_gone_after_amazon_completed_shows_503_then_success_completed_once(
    outage_postgres: OutagePostgres,
    fresh_database: str,
    start_shop: StartShop,
    simulator: ServerProcess,
    buyer_factory: NewBuyer,
) -> None:
    shop = start_shop(fresh_database, workers=1, threads=4)
    buyer = buyer_factory(shop.base_url)
    amazon_return = buyer.checkout("success")
    session_id = amazon_return.checkout_session_id
    # Amazon applies Complete at once but answers 2.5 s later: the database goes in between.
    add_fault(
        simulator.base_url,
        operation="CompleteCheckoutSession",
        kind="delay",
        delay_ms=2500,
        checkout_session_id=session_id,
    )

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(buyer.get, amazon_return.return_url)
        wait_for(
            lambda: bool(completes(simulator.base_url, session_id)),
            timeout=20,
            interval=0.05,
            what="Amazon received Complete",
        )
        with outage_postgres.stopped():
            answered = first.result(timeout=30)
            assert_unavailable(answered, returning=True)
            assert_unavailable(buyer.get(amazon_return.return_url), returning=True)
            time.sleep(1)  # down for a while: the holder's let-go waits for the database

    started = time.monotonic()
    seen = refresh_until_decided(buyer, amazon_return.return_url, timeout=30)
    settled = time.monotonic() - started

    assert seen[-1] == "success", (seen, shop.log_tail())
    assert set(seen) <= {"unavailable", "pending", "success"}, seen  # never "not successful"
    assert len(completes(simulator.base_url, session_id)) == 1
    # The failed holder let its lease go once the database was back: no 20 s lease to sit out.
    assert settled < 10, (settled, seen)
