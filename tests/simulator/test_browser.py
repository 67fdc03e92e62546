"""A real Chromium drives checkout.js and the hosted page from a shop page with a strict CSP
(`script-src 'self' <simulator>`, `form-action 'self' <simulator>`), using only the keyboard."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from amazonpay import signing
from amazonpay.simulator import ServerHandle
from tests.simulator.conftest import SANDBOX_KEY_ID, Api, Keys, saved_wallet, session_payload
from tests.support.browser import CHROMIUM_ARGS, CSP_LISTENER_SCRIPT, chromium_path

BUTTON_JS = b"""
var config = JSON.parse(document.getElementById('amazon-pay-button-config').textContent);
window.amazon.Pay.renderButton('#amazon-pay-button-container', config);
"""


@pytest.fixture
def shop(server: ServerHandle, keys: Keys) -> Iterator[str]:
    """A stand-in shop page on its own origin that renders the simulated button."""
    state: dict[str, str] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/button.js":
            start_response("200 OK", [("Content-Type", "application/javascript")])
            return [BUTTON_JS]
        if path == "/checkout/return":
            start_response("200 OK", [("Content-Type", "text/html")])
            return [b"<!doctype html><title>Returned</title><h1>Returned to the shop</h1>"]
        payload_json = json.dumps(
            session_payload(return_url=state["origin"] + "/checkout/return?order=1")
        )
        config = {
            "merchantId": "M1",
            "publicKeyId": SANDBOX_KEY_ID,
            "ledgerCurrency": "USD",
            "checkoutLanguage": "en_US",
            "productType": "PayAndShip",
            "placement": "Checkout",
            "buttonColor": "Gold",
            "sandbox": True,
            "createCheckoutSessionConfig": {
                "payloadJSON": payload_json,
                "signature": signing.sign_button_payload(
                    keys.private, payload_json, signing.Algorithm.PSS_V2
                ),
                "publicKeyId": SANDBOX_KEY_ID,
                "algorithm": signing.Algorithm.PSS_V2.value,
            },
        }
        config_json = json.dumps(config).replace("<", "\\u003c")  # safe inside <script>
        page = f"""<!doctype html><html lang="en"><head><title>Shop</title></head><body>
<h1>Checkout</h1>
<div id="amazon-pay-button-container"></div>
<script type="application/json" id="amazon-pay-button-config">{config_json}</script>
<script src="{server.base_url}/checkout.js"></script>
<script src="/button.js"></script>
</body></html>"""
        csp = (
            f"default-src 'self'; script-src 'self' {server.base_url}; "
            f"form-action 'self' {server.base_url}; style-src 'self'; object-src 'none'"
        )
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Security-Policy", csp)])
        return [page.encode()]

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    state["origin"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state["origin"]
    httpd.shutdown()
    thread.join(5)
    httpd.server_close()


@pytest.mark.e2e
def test_keyboard_buyer_goes_from_the_shop_button_to_the_return_url(shop: str, api: Api) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path()), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.add_init_script(CSP_LISTENER_SCRIPT)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(shop + "/checkout")
            button = page.get_by_test_id("amazon-pay-button")
            assert button.inner_text() == "Amazon Pay (simulated)"
            assert page.evaluate("window.__cspViolations") == []
            button.focus()
            page.keyboard.press("Enter")
            page.wait_for_url(f"{api.base_url}/hosted/*")
            assert "Amazon Pay — simulated" in page.content()
            page.get_by_test_id("pay-method-1111").focus()
            page.keyboard.press("Enter")
            page.wait_for_url(f"{shop}/checkout/return*")
            query = parse_qs(urlsplit(page.url).query)
            assert query["order"] == ["1"]
            (session_id,) = query["amazonCheckoutSessionId"]
            assert errors == []
        finally:
            browser.close()
    session = api.call("GET", f"/checkoutSessions/{session_id}").json()
    assert session["statusDetails"]["state"] == "Open"
    assert session["buyer"] is not None


@pytest.mark.e2e
def test_keyboard_buyer_fixes_a_saved_wallet_on_the_update_page(api: Api) -> None:
    """The stand-in for Amazon's update page (docs section 6) works with the keyboard alone and
    without a CSP violation."""
    permission_id = saved_wallet(api)
    api.control(f"charge-permissions/{permission_id}/buyer", {"action": "expire_card"})
    url = f"{api.base_url}/jr/your-account/ba/{permission_id}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path()), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.add_init_script(CSP_LISTENER_SCRIPT)
            page.goto(url)
            assert page.get_by_test_id("wallet-state").inner_text() == "NonChargeable"
            for _ in range(10):  # Tab until the update button has the focus
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.id") == "update-payment-method":
                    break
            assert page.evaluate("document.activeElement.id") == "update-payment-method"
            page.keyboard.press("Enter")
            page.wait_for_url(f"{url}?updated=1")
            assert page.get_by_test_id("wallet-updated").is_visible()
            assert page.get_by_test_id("wallet-state").inner_text() == "Chargeable"
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()
    details = api.call("GET", f"/chargePermissions/{permission_id}").json()["statusDetails"]
    assert details["state"] == "Chargeable"
