"""A buyer in Chromium: shop, cart, the Amazon Pay button, the hosted page, back to the shop.

Every journey also checks that no page broke its Content-Security-Policy and that no script
threw; screenshots of each step are kept under test-artifacts/e2e/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowsingSession

PAYMENT_FAILED = "Your Amazon Pay payment was not successful. Please try again."
WALLET_FAILED = (
    "Your request to save Amazon Pay as a payment method was not successful. Please try again."
)
CHARGE_PERMISSION_ID = re.compile(r"^[SBP]01-\d{7}-\d{7}$")
# The simulator's hosted page: the button for each of the buyer's choices.
CHOICES = {"success": "pay-method-1111", "declined": "pay-method-3434", "cancel": "pay-cancel"}


def amazon_pay_button(page: Page):  # type: ignore[no-untyped-def]
    """The button checkout.js rendered (not the shop's placeholder container)."""
    return page.locator("button#amazon-pay-button")


def fill_cart(tab: BrowsingSession, shop_url: str) -> str:
    """Add the first product from the storefront; returns the checkout total as shown."""
    page = tab.page
    page.goto(shop_url + "/")
    expect(page.get_by_test_id("cart-count")).to_contain_text("0 items")
    tab.screenshot("storefront")
    page.locator("[data-testid^='add-']").first.click()
    expect(page.get_by_test_id("cart-count")).to_contain_text("1 item")
    page.get_by_role("link", name="Checkout").click()
    expect(page).to_have_url(re.compile(r"/checkout$"))
    total = page.get_by_test_id("cart-total").inner_text().strip()
    assert total.startswith("$"), total
    return total.removeprefix("$")


def go_to_amazon(tab: BrowsingSession, *, keyboard: bool) -> None:
    """Use the Amazon Pay button (click, or focus and Enter) and land on the hosted page."""
    page = tab.page
    button = amazon_pay_button(page)
    expect(button).to_be_visible()
    tab.screenshot("button")
    if keyboard:
        button.focus()
        page.keyboard.press("Enter")
    else:
        button.click()
    expect(page.get_by_test_id("hosted-page")).to_be_visible()
    tab.screenshot("hosted-page")


def choose(tab: BrowsingSession, choice: str, *, keyboard: bool = False) -> None:
    control = tab.page.get_by_test_id(CHOICES[choice])
    if keyboard:
        control.focus()
        tab.page.keyboard.press("Enter")
    else:
        control.click()


def test_one_time_checkout_pays_and_shows_the_order(tab: BrowsingSession, shop_url: str) -> None:
    page = tab.page
    total = fill_cart(tab, shop_url)
    go_to_amazon(tab, keyboard=False)
    expect(page.get_by_test_id("hosted-amount")).to_have_text(f"{total} USD")
    choose(tab, "success")

    expect(page).to_have_url(re.compile(r"/checkout/result/[A-Za-z0-9_-]+$"))
    expect(page.get_by_test_id("success")).to_contain_text("your order is confirmed")
    expect(page.get_by_test_id("order-total")).to_have_text(f"USD {total}")
    expect(page.get_by_test_id("charge-permission-id")).to_have_text(CHARGE_PERMISSION_ID)
    tab.screenshot("success")

    page.reload()  # refreshing shows the same success
    expect(page.get_by_test_id("success")).to_be_visible()
    page.goto(shop_url + "/")  # paid: the cart starts over
    expect(page.get_by_test_id("cart-count")).to_contain_text("0 items")
    tab.assert_clean()


def test_wallet_setup_by_keyboard_lists_the_charge_permission(
    tab: BrowsingSession, shop_url: str
) -> None:
    page = tab.page
    page.goto(shop_url + "/wallet")
    expect(page.get_by_test_id("no-saved-methods")).to_be_visible()
    go_to_amazon(tab, keyboard=True)
    expect(page.get_by_test_id("hosted-amount")).to_contain_text("No charge now")
    choose(tab, "success", keyboard=True)

    expect(page.get_by_test_id("success")).to_contain_text("saved as your payment method")
    permission_id = page.get_by_test_id("charge-permission-id").inner_text().strip()
    assert CHARGE_PERMISSION_ID.match(permission_id), permission_id
    tab.screenshot("success")

    page.get_by_role("link", name="See your wallet").click()
    expect(page).to_have_url(re.compile(r"/wallet$"))
    expect(page.get_by_test_id("saved-method")).to_have_count(1)
    expect(page.get_by_test_id("charge-permission-id")).to_have_text(permission_id)
    tab.screenshot("wallet")
    tab.assert_clean()


@pytest.mark.parametrize("choice", ["cancel", "declined"])
@pytest.mark.parametrize(
    ("flow", "message"),
    [
        pytest.param("one-time", PAYMENT_FAILED, id="one-time"),
        pytest.param("wallet", WALLET_FAILED, id="wallet"),
    ],
)
def test_payment_not_completed_returns_to_the_start_with_the_message(
    tab: BrowsingSession, shop_url: str, flow: str, message: str, choice: str
) -> None:
    page = tab.page
    if flow == "one-time":
        fill_cart(tab, shop_url)
        start_path = "/checkout"
    else:
        page.goto(shop_url + "/wallet")
        start_path = "/wallet"
    go_to_amazon(tab, keyboard=False)
    choose(tab, choice)

    expect(page).to_have_url(re.compile(re.escape(start_path) + r"(\?.*)?$"))
    expect(page.get_by_test_id("flash-error")).to_have_text(message)
    expect(page.get_by_test_id("success")).to_have_count(0)
    tab.screenshot("message")
    # The buyer can try again straight away: the button is back and works.
    go_to_amazon(tab, keyboard=True)
    choose(tab, "success")
    expect(page.get_by_test_id("success")).to_be_visible()
    tab.assert_clean()


def test_csp_blocks_injected_inline_script_and_the_monitor_reports_it(
    tab: BrowsingSession, shop_url: str
) -> None:
    """The shop's CSP refuses inline code, and the CSP check of the journeys above can fail."""
    page = tab.page
    page.goto(shop_url + "/checkout")
    page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.__injected = true;';
            document.head.appendChild(script);
        }"""
    )
    expect(page.locator("body")).to_be_visible()
    page.wait_for_function("window.__cspViolations.length > 0", timeout=5000)
    assert page.evaluate("window.__injected === undefined")
    assert any("script-src" in v for v in tab.csp_violations()), tab.csp_violations()
    with pytest.raises(AssertionError):
        tab.assert_clean()
