"""Eight simultaneous submits of the same "Pay with" form charge the saved wallet exactly once.

A double click, a second tab, two app instances behind a load balancer: every POST of the same
`ref` must end on the same outcome and Amazon must see one Create Charge (docs/contract.md
"Using a saved wallet"). Runs against real deployments (gunicorn, 2 workers x 4 threads) on
SQLite, on PostgreSQL, and as two app instances sharing one PostgreSQL database.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from amazonpay.client import idempotency_key_for
from tests.support.buyer import HttpBuyer, add_fault, page_outcome, simulator_requests
from tests.support.servers import Deployment

SIMULTANEOUS_PER_INSTANCE = 8
CHARGE_DELAY_MS = 600  # the winner's Create Charge is slow: every other submit arrives during it
TIMEOUT = 60.0

_FORM = re.compile(
    r'<form method="post" action="/checkout/saved".*?name="csrf_token" value="([^"]+)"'
    r'.*?name="ref" value="([^"]+)".*?name="charge_permission_id" value="([^"]+)"',
    re.S,
)
_CHARGE_ID = re.compile(r'data-testid="charge-id">([^<]+)<')


@pytest.fixture
def buyer(deployment: Deployment) -> Iterator[HttpBuyer]:
    http_buyer = HttpBuyer(deployment.shop_urls[0], deployment.simulator_url)
    yield http_buyer
    http_buyer.close()


def wait_until_every_worker_serves(shop_urls: tuple[str, ...]) -> None:
    """A worker that read the schema while another was still creating it answers 503 until
    its next check (SCHEMA_RECHECK_SECONDS): wait for a run of healthy answers everywhere."""
    deadline = time.monotonic() + 15
    healthy = 0
    while healthy < 12 and time.monotonic() < deadline:
        ok = all(requests.get(f"{url}/healthz", timeout=5).ok for url in shop_urls)
        healthy = healthy + 1 if ok else 0
        if not ok:
            time.sleep(0.2)


def submit(
    url: str, form: Mapping[str, str], cookies: Mapping[str, str], barrier: threading.Barrier
) -> tuple[int, str, str, str | None]:
    """POST the form, follow the redirect: (first status, final path, outcome, charge id)."""
    with requests.Session() as http:
        http.cookies.update(cookies)
        barrier.wait(timeout=TIMEOUT)
        response = http.post(url, data=dict(form), timeout=TIMEOUT)
    first = response.history[0].status_code if response.history else response.status_code
    found = _CHARGE_ID.search(response.text)
    return (
        first,
        urlsplit(response.url).path,
        page_outcome(response),
        found.group(1) if found else None,
    )


def test_simultaneous_pay_submits_charge_once_and_agree(
    deployment: Deployment, buyer: HttpBuyer
) -> None:
    wait_until_every_worker_serves(deployment.shop_urls)
    saved = buyer.checkout("success", wallet=True)
    assert page_outcome(buyer.get(saved.on(buyer.shop_url))) == "success"
    buyer.add_to_cart()
    page = buyer.get("/checkout")
    match = _FORM.search(page.text)
    assert match is not None, page.text
    csrf, ref, permission_id = (html.unescape(value) for value in match.groups())
    add_fault(
        deployment.simulator_url,
        operation="CreateCharge",
        kind="delay",
        delay_ms=CHARGE_DELAY_MS,
        count=1,
    )
    form = {"csrf_token": csrf, "ref": ref, "charge_permission_id": permission_id}
    urls = [
        f"{shop_url}/checkout/saved"
        for _ in range(SIMULTANEOUS_PER_INSTANCE)
        for shop_url in deployment.shop_urls
    ]
    cookies = buyer.http.cookies.get_dict()
    barrier = threading.Barrier(len(urls))

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        futures = [pool.submit(submit, url, form, cookies, barrier) for url in urls]
        results = [future.result(timeout=TIMEOUT * 2) for future in futures]

    assert all(r[0] == 303 for r in results), (results, deployment.logs())
    assert {r[1] for r in results} == {f"/checkout/result/{ref}"}, results
    assert {r[2] for r in results} == {"success"}, (results, deployment.logs())
    charge_ids = {r[3] for r in results}
    assert len(charge_ids) == 1, charge_ids
    assert None not in charge_ids
    key = idempotency_key_for(f"charge:{ref}:1")
    charges = [
        entry
        for entry in simulator_requests(deployment.simulator_url)
        if entry["operation"] == "CreateCharge" and entry["idempotency_key"] == key
    ]
    assert len(charges) == 1, (charges, deployment.logs())
    assert charges[0]["status"] == 201
