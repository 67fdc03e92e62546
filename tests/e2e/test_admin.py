"""The shop's staff in Chromium on the offline demo: sign in with the password printed at start-up,
find the buyer's order, refund part of it and see it pending then refunded, and charge the
buyer's saved wallet. Screenshots of each step are kept under test-artifacts/e2e/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import BrowsingSession
from tests.e2e.test_buyer_journeys import CHARGE_PERMISSION_ID, choose, fill_cart, go_to_amazon
from tests.support.servers import ServerProcess, clean_environment, start_gunicorn

PRINTED = re.compile(r"Merchant console \(/admin\) password: (\S+) \(kept in ")


@dataclass(frozen=True)
class Demo:
    url: str
    password: str
    simulator_url: str  # the embedded simulator's control API, on loopback
    server: ServerProcess
    instance: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The offline demo as `make run` serves it (2 workers), with an instance folder we know."""
    work = tmp_path_factory.mktemp("e2e-admin")
    instance = work / "instance"
    env = clean_environment({"APP_INSTANCE_PATH": str(instance)})
    server = start_gunicorn(env=env, log_dir=work / "logs", name="shop-admin", workers=2)
    try:
        printed = PRINTED.findall(server.log_tail(100_000))
        port = (instance / "simulator.port").read_text("ascii").strip()
        password = printed[0] if printed else ""
        yield Demo(server.base_url, password, f"http://127.0.0.1:{port}", server, instance)
    finally:
        server.stop()


def test_the_generated_password_is_printed_once_by_the_first_worker(demo: Demo) -> None:
    log = demo.server.log_tail(100_000)
    assert len(PRINTED.findall(log)) == 1, log  # two workers, one line
    kept = next(demo.instance.glob("*password*"))
    assert f"(kept in {kept})" in log
    assert demo.password == kept.read_text("ascii").strip()
    assert kept.stat().st_mode & 0o077 == 0


def test_staff_refund_part_of_the_buyers_order_and_charge_the_saved_wallet(
    tab: BrowsingSession, demo: Demo
) -> None:
    page = tab.page
    # The buyer: saves Amazon Pay, then pays a cart through the button.
    page.goto(demo.url + "/wallet")
    go_to_amazon(tab, keyboard=False)
    choose(tab, "success")
    expect(page.get_by_test_id("success")).to_contain_text("saved as your payment method")
    permission_id = page.get_by_test_id("charge-permission-id").inner_text().strip()
    assert CHARGE_PERMISSION_ID.match(permission_id), permission_id
    total = fill_cart(tab, demo.url)
    go_to_amazon(tab, keyboard=False)
    choose(tab, "success")
    expect(page).to_have_url(re.compile(r"/checkout/result/[A-Za-z0-9_-]+$"))
    reference = page.url.rsplit("/", 1)[1]

    # Staff: the console asks to sign in first; a wrong password is refused.
    page.goto(demo.url + "/admin")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    page.get_by_label("Staff password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong password.")).to_be_visible()
    tab.screenshot("wrong-password")
    page.get_by_label("Staff password").fill(demo.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin$"))
    row = page.locator(f"[data-testid='order-row'][data-reference='{reference}']")
    expect(row).to_contain_text(f"USD {total}")
    expect(row.get_by_test_id("order-state")).to_have_text("paid")
    tab.screenshot("orders")

    # Refund part of it: pending until Amazon settles it, refunded after a refresh.
    row.get_by_role("link", name=reference).click()
    expect(page).to_have_url(re.compile(rf"/admin/orders/{reference}$"))
    page.get_by_label(re.compile(r"^Amount")).fill("2.00")
    page.get_by_role("button", name="Refund").click()
    expect(page.get_by_test_id("admin-notice")).to_contain_text("USD 2.00")
    expect(page.get_by_test_id("refund-state")).to_have_text("pending")
    expect(page.get_by_test_id("refund-pending")).to_have_text("2.00")
    tab.screenshot("refund-pending")
    refund_id = page.get_by_test_id("refund-row").locator("code").first.inner_text().strip()
    settled = requests.post(
        f"{demo.simulator_url}/_simulator/refunds/{refund_id}/outcome",
        json={"outcome": "Refunded"},
        timeout=10,
    )
    assert settled.status_code == 200, settled.text
    page.reload()
    expect(page.get_by_test_id("refund-state")).to_have_text("refunded")
    expect(page.get_by_test_id("refunded")).to_have_text("2.00")
    expect(page.get_by_test_id("audit-row").first).to_contain_text("refund")
    tab.screenshot("refunded")

    # Charge the buyer's saved wallet from the wallet list.
    page.get_by_role("link", name="Saved wallets").click()
    wallet = page.locator(
        f"[data-testid='wallet-row'][data-charge-permission-id='{permission_id}']"
    )
    expect(wallet.get_by_test_id("wallet-state")).to_have_text("chargeable")
    wallet.get_by_label(re.compile(r"^Amount")).fill("15.00")
    tab.screenshot("charge-form")
    wallet.get_by_role("button", name="Charge").click()
    expect(page).to_have_url(re.compile(r"/admin/orders/mit-[0-9a-f]+$"))
    expect(page.get_by_test_id("admin-notice")).to_have_text(
        "USD 15.00 charged to the saved wallet."
    )
    expect(page.get_by_test_id("order-state")).to_have_text("paid")
    expect(page.get_by_test_id("charge-permission-id")).to_have_text(permission_id)
    tab.screenshot("charged")
    charged = page.url.rsplit("/", 1)[1]
    page.get_by_role("link", name="All orders").click()
    merchant = page.locator(f"[data-testid='order-row'][data-reference='{charged}']")
    expect(merchant).to_contain_text("merchant")
    tab.screenshot("orders-with-charge")
    tab.assert_clean()
