"""A buyer's saved wallet in Chromium on the offline demo: save Amazon Pay, pay later orders with
it (once by keyboard), meet a card that expired at Amazon, fix it on the simulator's stand-in for
Amazon's page and pay, then remove the wallet (docs/contract.md "Using a saved wallet"). No page
may break its Content-Security-Policy; screenshots of each step are kept under test-artifacts/e2e/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowsingSession
from tests.e2e.test_buyer_journeys import (
    CHARGE_PERMISSION_ID,
    PAYMENT_FAILED,
    amazon_pay_button,
    choose,
    fill_cart,
    go_to_amazon,
)
from tests.support.servers import clean_environment, start_gunicorn

REMOVED = "Amazon Pay was removed from your payment methods."
PAY_LABEL = "Pay with Visa ****1111"
RESULT = re.compile(r"/checkout/result/[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Demo:
    url: str
    simulator_url: str  # the embedded simulator's control API, on loopback


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The offline demo as `make run` serves it, with an instance folder we know: the embedded
    simulator's port is in it, and its control API plays the buyer at Amazon."""
    work = tmp_path_factory.mktemp("e2e-saved-wallet")
    instance = work / "instance"
    env = clean_environment({"APP_INSTANCE_PATH": str(instance)})
    server = start_gunicorn(env=env, log_dir=work / "logs", name="shop-wallet", workers=2)
    try:
        port = (instance / "simulator.port").read_text("ascii").strip()
        yield Demo(server.base_url, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def at_amazon(demo: Demo, permission_id: str, action: str) -> None:
    """What the buyer does in their Amazon account (the simulator's control API)."""
    answer = requests.post(
        f"{demo.simulator_url}/_simulator/charge-permissions/{permission_id}/buyer",
        json={"action": action},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def pay_button(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("button", name=PAY_LABEL)


def save_amazon_pay(tab: BrowsingSession, demo: Demo) -> str:
    """Save Amazon Pay on /wallet (card 1111); -> the charge permission id the page shows."""
    page = tab.page
    page.goto(demo.url + "/wallet")
    go_to_amazon(tab, keyboard=False)
    choose(tab, "success")
    expect(page.get_by_test_id("success")).to_contain_text("saved as your payment method")
    permission_id = page.get_by_test_id("charge-permission-id").inner_text().strip()
    assert CHARGE_PERMISSION_ID.match(permission_id), permission_id
    return permission_id


def expect_paid(tab: BrowsingSession, total: str, permission_id: str, step: str) -> None:
    page = tab.page
    expect(page).to_have_url(RESULT)
    expect(page.get_by_test_id("success")).to_contain_text("your order is confirmed")
    expect(page.get_by_test_id("order-total")).to_have_text(f"USD {total}")
    expect(page.get_by_test_id("charge-permission-id")).to_have_text(permission_id)
    expect(page.get_by_test_id("charge-id")).to_have_text(re.compile(r"-C\d+$"))
    tab.screenshot(step)


def test_save_pay_fix_an_expired_card_pay_again_and_remove(
    tab: BrowsingSession, demo: Demo
) -> None:
    page = tab.page
    permission_id = save_amazon_pay(tab, demo)

    # A later order: the checkout offers the saved wallet by its card; paid by keyboard.
    total = fill_cart(tab, demo.url)
    wallet = page.locator(
        f"[data-testid='saved-wallet'][data-charge-permission-id='{permission_id}']"
    )
    expect(wallet).to_be_visible()
    expect(pay_button(page)).to_be_visible()
    expect(amazon_pay_button(page)).to_be_visible()  # the button stays as the other way
    tab.screenshot("checkout-with-saved-wallet")
    pay_button(page).focus()
    page.keyboard.press("Enter")
    expect_paid(tab, total, permission_id, "paid-with-saved-wallet")
    page.goto(demo.url + "/")  # paid: the cart starts over
    expect(page.get_by_test_id("cart-count")).to_contain_text("0 items")

    # The card expires at Amazon. The shop confirmed the wallet moments ago, and offline no IPN
    # reaches it, so the next Pay is where Amazon says no: nothing is charged, and the checkout
    # then shows the update link instead of the form.
    at_amazon(demo, permission_id, "expire_card")
    total = fill_cart(tab, demo.url)
    pay_button(page).click()
    expect(page).to_have_url(re.compile(r"/checkout$"))
    expect(page.get_by_test_id("flash-error")).to_have_text(PAYMENT_FAILED)
    expect(page.get_by_test_id("fix-payment-method-link")).to_be_visible()
    expect(wallet.get_by_test_id("update-payment-method-link")).to_be_visible()
    expect(page.get_by_test_id("pay-with-saved-wallet")).to_have_count(0)
    tab.screenshot("card-expired")
    page.reload()  # the link stays while the wallet needs the buyer at Amazon
    expect(wallet.get_by_test_id("update-payment-method-link")).to_be_visible()
    expect(page.get_by_test_id("pay-with-saved-wallet")).to_have_count(0)

    # Follow it to (the stand-in for) Amazon's page and fix the card there.
    wallet.get_by_test_id("update-payment-method-link").click()
    stand_in = page.get_by_test_id("wallet-page")
    expect(stand_in).to_have_attribute("data-charge-permission-id", permission_id)
    expect(page.get_by_test_id("wallet-state")).to_have_text("NonChargeable")
    expect(page.locator("[data-reason-code='PaymentMethodExpired']")).to_be_visible()
    tab.screenshot("amazon-update-page")
    page.get_by_test_id("update-payment-method").click()
    expect(page.get_by_test_id("wallet-updated")).to_be_visible()
    expect(page.get_by_test_id("wallet-state")).to_have_text("Chargeable")
    tab.screenshot("amazon-updated")

    # Back at the shop: the wallet is offered again and pays the same cart.
    page.goto(demo.url + "/checkout")
    expect(page.get_by_test_id("flash-error")).to_have_count(0)
    expect(pay_button(page)).to_be_visible()
    tab.screenshot("checkout-fixed")
    pay_button(page).click()
    expect_paid(tab, total, permission_id, "paid-after-fix")

    # Remove it on /wallet: the page says so, and the checkout no longer offers it.
    page.goto(demo.url + "/wallet")
    method = page.get_by_test_id("saved-method")
    expect(method.get_by_test_id("wallet-state")).to_have_text("Usable")
    method.get_by_role("button", name="Remove").click()
    expect(page).to_have_url(re.compile(r"/wallet$"))
    expect(page.get_by_test_id("flash-info")).to_have_text(REMOVED)
    expect(method.get_by_test_id("wallet-state")).to_have_text("Closed")
    expect(method.get_by_role("button", name="Remove")).to_have_count(0)
    tab.screenshot("removed")
    fill_cart(tab, demo.url)
    expect(page.get_by_test_id("saved-wallets")).to_have_count(0)
    expect(page.get_by_test_id("pay-with-saved-wallet")).to_have_count(0)
    expect(amazon_pay_button(page)).to_be_visible()
    tab.screenshot("checkout-without-wallet")
    tab.assert_clean()
