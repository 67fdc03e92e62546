"""A frozen PostgreSQL (SIGSTOP: its kernel still accepts and ACKs every packet) holds no request
past the configured budget, and /healthz says 503 within 2 s (real gunicorn, real PostgreSQL)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from storefront.db import DatabaseTimeouts
from tests.outages.conftest import OutagePostgres, StartShop, healthy, wait_for
from tests.support.buyer import HttpBuyer, page_outcome
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.postgres

BUDGET = DatabaseTimeouts().longest_wait  # what the app runs with: app.py passes no limits


@dataclass(frozen=True)
class Answer:
    path: str
    status: int
    seconds: float
    text: str


def ask(base_url: str, path: str, cookies: dict[str, str]) -> Answer:
    started = time.monotonic()
    response = requests.get(base_url + path, cookies=cookies, timeout=30, allow_redirects=False)
    return Answer(path, response.status_code, time.monotonic() - started, response.text)


def test_a_frozen_database_answers_503_within_the_budget_and_healthz_within_2s(
    outage_postgres: OutagePostgres,
    fresh_database: str,
    start_shop: StartShop,
    simulator: ServerProcess,
) -> None:
    # Enough threads that no request queues behind another: each is timed on its own.
    shop = start_shop(fresh_database, workers=1, threads=12)
    buyer = HttpBuyer(shop.base_url, simulator.base_url)
    amazon_return = buyer.checkout("success")
    cookies = buyer.http.cookies.get_dict()
    return_path = amazon_return.return_url.split(shop.base_url, 1)[1]
    paths = ["/healthz"] * 4 + ["/wallet"] * 2 + [return_path] * 2 + ["/", "/cart"]

    with outage_postgres.frozen(), ThreadPoolExecutor(max_workers=len(paths)) as pool:
        first = list(pool.map(lambda path: ask(shop.base_url, path, cookies), paths))
        # Again, now that the pool's connections are gone: every call needs a new connection.
        second = list(pool.map(lambda path: ask(shop.base_url, path, cookies), paths))

    for answer in first + second:
        summary = (answer.path, answer.status, round(answer.seconds, 2))
        if answer.path == "/healthz":
            assert answer.status == 503, summary
            assert answer.seconds < 2.0, summary
        elif answer.path in ("/", "/cart"):
            assert answer.status == 200, summary
            assert answer.seconds < 1.0, summary
        else:
            assert answer.status == 503, summary
            assert 'data-testid="unavailable"' in answer.text
            assert answer.seconds < BUDGET, (summary, BUDGET)
    assert all(
        "Your payment is safe and will be confirmed" in answer.text
        for answer in first + second
        if answer.path == return_path
    )

    wait_for(lambda: healthy(shop.base_url), timeout=15, what="healthz 200 after the thaw")
    back = buyer.get(amazon_return.return_url)
    assert page_outcome(back) == "success", (back.status_code, shop.log_tail())
    buyer.close()
