"""Buyers whose claims a crashed worker left behind tie up no request thread: an unrelated page
stays fast on 1 worker x 4 threads, and each claim is taken over and settled within 30 s, with
one Complete at Amazon (real gunicorn, real PostgreSQL, the simulator)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.outages.conftest import StartShop, healthy, wait_for, worker_pids
from tests.support.buyer import AmazonReturn, HttpBuyer, add_fault, page_outcome, simulator_requests
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.postgres

BUYERS = 4
TAKEOVER_WITHIN = 30.0
WAIT = 2.0  # CHECKOUT_CLAIM_WAIT_SECONDS (tests/outages/served_app.py)
FAST = 0.5


def completes(simulator_url: str, session_id: str) -> int:
    return sum(
        1
        for entry in simulator_requests(simulator_url, session_id)
        if entry["operation"] == "CompleteCheckoutSession"
    )


def test_claims_of_a_crashed_worker_slow_nothing_down_and_are_taken_over_within_30s(
    fresh_database: str, start_shop: StartShop, simulator: ServerProcess
) -> None:
    shop = start_shop(fresh_database, workers=1, threads=BUYERS)
    buyers = [HttpBuyer(shop.base_url, simulator.base_url) for _ in range(BUYERS)]
    returns: list[AmazonReturn] = [buyer.checkout("success") for buyer in buyers]
    for amazon_return in returns:
        # Amazon applies Complete at once and answers late: the worker dies while it waits.
        add_fault(
            simulator.base_url,
            operation="CompleteCheckoutSession",
            kind="delay",
            delay_ms=5000,
            checkout_session_id=amazon_return.checkout_session_id,
        )

    with ThreadPoolExecutor(max_workers=BUYERS) as pool:
        doomed = [
            pool.submit(buyer.get, amazon_return.return_url, timeout=30)
            for buyer, amazon_return in zip(buyers, returns, strict=True)
        ]
        wait_for(
            lambda: all(completes(simulator.base_url, r.checkout_session_id) for r in returns),
            timeout=20,
            interval=0.05,
            what="every Complete reached Amazon",
        )
        (worker,) = worker_pids(shop)
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()
        for future in doomed:
            with pytest.raises(requests.ConnectionError):
                future.result(timeout=30)
    wait_for(lambda: healthy(shop.base_url), timeout=30, what="a new worker serves")

    settled_after: dict[int, float] = {}
    refresh_seconds: list[tuple[float, float]] = []  # (started after the kill, seconds)
    seen: dict[int, list[str]] = {index: [] for index in range(BUYERS)}

    def refresh_until_settled(index: int) -> None:
        buyer, amazon_return = buyers[index], returns[index]
        while time.monotonic() - killed_at < TAKEOVER_WITHIN + 5:
            started = time.monotonic()
            outcome = page_outcome(buyer.get(amazon_return.return_url))
            refresh_seconds.append((started - killed_at, time.monotonic() - started))
            seen[index].append(outcome)
            if outcome != "pending":
                settled_after[index] = time.monotonic() - killed_at
                return
            time.sleep(0.5)  # ten times as often as the pending page refreshes itself

    refreshers = [threading.Thread(target=refresh_until_settled, args=(i,)) for i in range(BUYERS)]
    for thread in refreshers:
        thread.start()
    home_seconds: list[tuple[float, float]] = []
    while any(thread.is_alive() for thread in refreshers):
        started = time.monotonic()
        assert requests.get(shop.base_url + "/", timeout=30).status_code == 200
        home_seconds.append((started - killed_at, time.monotonic() - started))
        time.sleep(0.2)
    for thread in refreshers:
        thread.join()

    logs = shop.log_tail()
    assert all(outcomes[-1] == "success" for outcomes in seen.values()), (seen, logs)
    assert max(settled_after.values()) < TAKEOVER_WITHIN, settled_after
    # Nobody sat on the orphaned claims. A refresh waits on a claim only while it is younger
    # than WAIT (it could be a double click whose winner is about to answer); after that every
    # refresh, and every `/` beside them, answers at once.
    assert len(home_seconds) > 20
    for timings in (refresh_seconds, home_seconds):
        assert max(seconds for _, seconds in timings) < WAIT + FAST, timings
        later = [seconds for after_kill, seconds in timings if after_kill > WAIT]
        assert later, timings
        assert max(later) < FAST, timings
    for amazon_return in returns:
        assert completes(simulator.base_url, amazon_return.checkout_session_id) == 1
    for buyer in buyers:
        buyer.close()
