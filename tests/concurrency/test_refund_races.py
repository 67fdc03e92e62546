"""Staff refunds and staff charges raced across two app instances (gunicorn, 2 workers x 4
threads each) sharing one PostgreSQL database (docs/contract.md "The merchant console"):

* different refund forms racing for an order's remainder never refund more than was captured,
  and Amazon sees exactly one Create Refund per request id;
* one refund form submitted 8 times over both instances makes one Create Refund;
* one saved-wallet charge form submitted 8 times over both instances makes one Create Charge.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
import requests

from amazonpay.client import idempotency_key_for
from storefront.db import Store, create_store_engine
from storefront.db.orders import WalletSetups
from storefront.db.refunds import RefundRows
from storefront.refunds import refund_key
from storefront.saved_wallet import charge_key
from storefront.states import OrderSource
from storefront.views.admin import merchant_charge_reference
from tests.concurrency.test_saved_wallet_races import wait_until_every_worker_serves
from tests.support.buyer import HttpBuyer, add_fault, simulator_requests
from tests.support.servers import (
    KeyPair,
    ServerProcess,
    app_environment,
    start_gunicorn,
    stopping,
)

pytestmark = pytest.mark.postgres

PASSWORD = "race-test-staff-password-5d1c"
PER_INSTANCE = 4  # 8 submits over the two instances
DELAY_MS = 600  # the winner's call is slow: every other submit arrives during it
TIMEOUT = 60.0

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


@dataclass(frozen=True)
class Console:
    """Two app instances with the console on, one database, the shared simulator."""

    urls: tuple[str, str]
    simulator_url: str
    store: Store
    servers: tuple[ServerProcess, ...]

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log_tail(3000)}" for s in self.servers)


@pytest.fixture(scope="module")
def console(
    merchant_keys: KeyPair, simulator: ServerProcess, work_dir: Path, postgres_url: str
) -> Iterator[Console]:
    env = app_environment(
        keys=merchant_keys,
        simulator_url=simulator.base_url,
        database_url=postgres_url,
        extra={"ADMIN_PASSWORD": PASSWORD},
    )
    servers = tuple(
        start_gunicorn(env=env, log_dir=work_dir / "logs", name=f"console-{name}")
        for name in ("a", "b")
    )
    store = Store(
        create_store_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    )
    with stopping(*servers):
        urls = (servers[0].base_url, servers[1].base_url)
        wait_until_every_worker_serves(urls)
        yield Console(urls, simulator.base_url, store, servers)
    store.engine.dispose()


def signed_in(console: Console) -> requests.Session:
    """A staff browser: its cookies (staff session, CSRF session) work on both instances,
    which share SECRET_KEY and the host 127.0.0.1."""
    http = requests.Session()
    page = http.get(f"{console.urls[0]}/admin/login", timeout=TIMEOUT)
    token = _CSRF.search(page.text)
    assert token is not None
    answer = http.post(
        f"{console.urls[0]}/admin/login",
        data={"password": PASSWORD, "csrf_token": html.unescape(token.group(1))},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 303, answer.text
    return http


def form_on(http: requests.Session, url: str, action: str) -> dict[str, str]:
    """The csrf_token and request_id of the form posting to `action` on the page at `url`."""
    page = http.get(url, timeout=TIMEOUT)
    assert page.status_code == 200, page.text
    rest = page.text[page.text.index(f'action="{action}"') :]
    csrf, request_id = _CSRF.search(rest), _REQUEST_ID.search(rest)
    assert csrf is not None
    assert request_id is not None
    return {"csrf_token": html.unescape(csrf.group(1)), "request_id": request_id.group(1)}


def paid_order(console: Console) -> str:
    buyer = HttpBuyer(console.urls[0], console.simulator_url)
    try:
        back = buyer.checkout("success")
        assert buyer.get(back.on(buyer.shop_url)).status_code == 200
    finally:
        buyer.close()
    return back.reference


def saved_wallet(console: Console) -> str:
    buyer = HttpBuyer(console.urls[0], console.simulator_url)
    try:
        back = buyer.checkout("success", wallet=True)
        assert buyer.get(back.on(buyer.shop_url)).status_code == 200
    finally:
        buyer.close()
    [wallet] = [
        w
        for w in WalletSetups(console.store.engine).recent()
        if w.checkout_session_id == back.checkout_session_id
    ]
    return wallet.charge_permission_id


def race(
    http: requests.Session, posts: list[tuple[str, dict[str, str]]]
) -> list[requests.Response]:
    """Send every (url, form) at once from its own connection, with the staff cookies."""
    barrier = threading.Barrier(len(posts))
    cookies = http.cookies

    def post(url: str, form: dict[str, str]) -> requests.Response:
        with requests.Session() as own:
            own.cookies.update(cookies)
            barrier.wait(timeout=TIMEOUT)
            return own.post(url, data=form, allow_redirects=False, timeout=TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        futures = [pool.submit(post, url, form) for url, form in posts]
        return [future.result(timeout=TIMEOUT * 2) for future in futures]


def made(console: Console, operation: str, key: str) -> list[dict[str, object]]:
    """The simulator's log entries of `operation` sent under our operation key `key`."""
    wanted = idempotency_key_for(key)
    return [
        entry
        for entry in simulator_requests(console.simulator_url)
        if entry["operation"] == operation and entry["idempotency_key"] == wanted
    ]


def test_different_refund_forms_racing_for_the_remainder_never_refund_more_than_captured(
    console: Console,
) -> None:
    reference = paid_order(console)
    order = console.store.orders.get(reference)
    assert order is not None
    captured = order.captured_amount
    # Two of these fit in what was captured, a third does not.
    each = (captured / 2).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    assert 2 * each <= captured < 3 * each
    http = signed_in(console)
    action = f"/admin/orders/{reference}/refund"
    posts = []
    for url in console.urls:
        for _ in range(PER_INSTANCE):
            form = form_on(http, f"{url}/admin/orders/{reference}", action)
            posts.append((f"{url}{action}", {**form, "amount": str(each)}))
    request_ids = [form["request_id"] for _, form in posts]
    assert len(set(request_ids)) == len(posts)  # each render made a fresh form
    add_fault(
        console.simulator_url, operation="CreateRefund", kind="delay", delay_ms=DELAY_MS, count=2
    )

    answers = race(http, posts)

    assert [a.status_code for a in answers] == [303] * len(posts), console.logs()
    assert {a.headers["Location"].rsplit("/admin", 1)[-1] for a in answers} == {
        f"/orders/{reference}"
    }
    order = console.store.orders.get(reference)
    assert order is not None
    assert order.refunded_amount + order.refund_reserved_amount == 2 * each
    assert order.refunded_amount + order.refund_reserved_amount <= order.captured_amount
    rows = RefundRows(console.store.engine, console.store.orders)
    winners = [rid for rid in request_ids if rows.get(rid) is not None]
    assert len(winners) == 2, console.logs()
    for request_id in request_ids:
        sent = made(console, "CreateRefund", refund_key(request_id))
        assert len(sent) == (1 if request_id in winners else 0), (request_id, sent)


def test_one_refund_form_submitted_eight_times_over_two_instances_refunds_once(
    console: Console,
) -> None:
    reference = paid_order(console)
    http = signed_in(console)
    action = f"/admin/orders/{reference}/refund"
    form = {**form_on(http, f"{console.urls[1]}/admin/orders/{reference}", action)}
    form["amount"] = "1.00"
    add_fault(
        console.simulator_url, operation="CreateRefund", kind="delay", delay_ms=DELAY_MS, count=1
    )

    answers = race(http, [(f"{url}{action}", form) for url in console.urls] * PER_INSTANCE)

    assert [a.status_code for a in answers] == [303] * 2 * PER_INSTANCE, console.logs()
    sent = made(console, "CreateRefund", refund_key(form["request_id"]))
    assert len(sent) == 1, sent
    assert sent[0]["status"] == 201
    order = console.store.orders.get(reference)
    assert order is not None
    assert order.refunded_amount + order.refund_reserved_amount == Decimal("1.00")


def test_one_charge_form_submitted_eight_times_over_two_instances_charges_once(
    console: Console,
) -> None:
    permission_id = saved_wallet(console)
    http = signed_in(console)
    action = f"/admin/wallets/{permission_id}/charge"
    form = {**form_on(http, f"{console.urls[0]}/admin/wallets", action), "amount": "4.20"}
    add_fault(
        console.simulator_url, operation="CreateCharge", kind="delay", delay_ms=DELAY_MS, count=1
    )

    answers = race(http, [(f"{url}{action}", form) for url in console.urls] * PER_INSTANCE)

    reference = merchant_charge_reference(form["request_id"])
    assert [a.status_code for a in answers] == [303] * 2 * PER_INSTANCE, console.logs()
    assert {a.headers["Location"].rsplit("/admin", 1)[-1] for a in answers} == {
        f"/orders/{reference}"
    }
    sent = made(console, "CreateCharge", charge_key(reference, 1))
    assert len(sent) == 1, sent
    assert sent[0]["status"] == 201
    order = console.store.orders.get(reference)
    assert order is not None
    assert (order.source, order.amount) == (OrderSource.MERCHANT, Decimal("4.20"))
    page = http.get(f"{console.urls[1]}/admin/orders/{reference}", timeout=TIMEOUT)
    assert 'data-testid="order-state">paid' in page.text
