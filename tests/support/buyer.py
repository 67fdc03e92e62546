"""A buyer without a browser: fills the cart over HTTP, and does on the simulator what
checkout.js and the hosted page would do (form POST to /checkout/start, then a choice)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

TIMEOUT = 30.0

_CONFIG = re.compile(
    r'<script type="application/json" id="amazon-pay-button-config">(.*?)</script>', re.S
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PRODUCT = re.compile(r'name="product_id" value="([^"]+)"')

# The simulator's hosted page: value of the button the buyer presses for each outcome.
HOSTED_CHOICES = {
    "success": "1111",
    "canceled": "cancel",
    "BuyerCanceled": "3064",
    "Declined": "3434",
    "pending": "0701",
}


class BuyerFlowError(AssertionError):
    """A step of the buyer's flow did not answer as the contract says."""


def _expect(response: requests.Response, statuses: tuple[int, ...], step: str) -> None:
    if response.status_code not in statuses:
        raise BuyerFlowError(
            f"{step}: {response.request.method} {response.url} answered {response.status_code}, "
            f"expected {statuses}; body: {response.text[:500]!r}"
        )


@dataclass(frozen=True)
class AmazonReturn:
    """Where Amazon sends the buyer back: the shop's return URL with the session id appended."""

    checkout_session_id: str
    return_url: str
    reference: str

    def on(self, shop_url: str) -> str:
        """The same return URL on another app instance (same path and query)."""
        parts = urlsplit(self.return_url)
        return f"{shop_url.rstrip('/')}{parts.path}?{parts.query}"


class HttpBuyer:
    """One buyer (one cookie jar) of the shop at `shop_url`."""

    def __init__(self, shop_url: str, simulator_url: str) -> None:
        self.shop_url = shop_url.rstrip("/")
        self.simulator_url = simulator_url.rstrip("/")
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.http.get(urljoin(self.shop_url + "/", path_or_url), **kwargs)

    def add_to_cart(self, product_id: str | None = None) -> None:
        page = self.get("/")
        _expect(page, (200,), "storefront")
        csrf = _CSRF.search(page.text)
        products = _PRODUCT.findall(page.text)
        if csrf is None or not products:
            raise BuyerFlowError("storefront page has no add-to-cart form with a CSRF token")
        response = self.http.post(
            self.shop_url + "/cart/add",
            data={
                "csrf_token": html.unescape(csrf.group(1)),
                "product_id": product_id or products[0],
            },
            timeout=TIMEOUT,
        )
        _expect(response, (200,), "add to cart (after redirect)")

    def button_config(self, path: str = "/checkout") -> dict[str, Any]:
        page = self.get(path)
        _expect(page, (200,), f"GET {path}")
        found = _CONFIG.search(page.text)
        if found is None:
            raise BuyerFlowError(f"{path} has no #amazon-pay-button-config")
        config: dict[str, Any] = json.loads(found.group(1))
        return config

    def start_at_amazon(self, config: dict[str, Any]) -> str:
        """POST the button form to the simulator as checkout.js does; returns the session id."""
        session_config = config["createCheckoutSessionConfig"]
        form = {
            "payloadJSON": session_config["payloadJSON"],
            "signature": session_config["signature"],
            "publicKeyId": session_config.get("publicKeyId") or config["publicKeyId"],
            "algorithm": session_config.get("algorithm") or "AMZN-PAY-RSASSA-PSS",
            "merchantId": config["merchantId"],
            "sandbox": "false" if config.get("sandbox") is False else "true",
            "productType": config.get("productType", ""),
            "checkoutLanguage": config.get("checkoutLanguage", ""),
        }
        response = requests.post(
            self.simulator_url + "/checkout/start",
            data=form,
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        _expect(response, (303,), "button form at the simulator")
        location = response.headers["Location"]
        return location.rstrip("/").rsplit("/", 1)[1]

    def choose_at_amazon(self, checkout_session_id: str, outcome: str = "success") -> str:
        """Press a button on the hosted page; returns where Amazon redirects the browser."""
        response = requests.post(
            f"{self.simulator_url}/hosted/{checkout_session_id}/choose",
            data={"method": HOSTED_CHOICES[outcome]},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        _expect(response, (303,), f"hosted page choice {outcome}")
        return str(response.headers["Location"])

    def checkout(self, outcome: str = "success", *, wallet: bool = False) -> AmazonReturn:
        """Cart (unless wallet), button page, Amazon, choice; the return is not visited yet."""
        if not wallet:
            self.add_to_cart()
        config = self.button_config("/wallet" if wallet else "/checkout")
        payload = json.loads(config["createCheckoutSessionConfig"]["payloadJSON"])
        session_id = self.start_at_amazon(config)
        return_url = self.choose_at_amazon(session_id, outcome)
        query = parse_qs(urlsplit(return_url).query)
        if query.get("amazonCheckoutSessionId") != [session_id]:
            raise BuyerFlowError(f"return URL {return_url} does not carry session {session_id}")
        return AmazonReturn(
            checkout_session_id=session_id,
            return_url=return_url,
            reference=payload["merchantMetadata"]["merchantReferenceId"],
        )


def page_outcome(response: requests.Response) -> str:
    """What the buyer sees: success, pending, failure (back at /checkout or /wallet) or other."""
    text = response.text
    if response.status_code == 200 and 'data-testid="success"' in text:
        return "success"
    if response.status_code == 200 and 'data-testid="pending"' in text:
        return "pending"
    if response.status_code == 200 and "was not successful. Please try again." in text:
        return "failure"
    return f"other:{response.status_code}:{response.url}"


def simulator_requests(
    simulator_url: str, checkout_session_id: str | None = None
) -> list[dict[str, Any]]:
    """The simulator's request log, optionally only the entries for one checkout session."""
    response = requests.get(f"{simulator_url}/_simulator/requests", timeout=TIMEOUT)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    if checkout_session_id is not None:
        entries = [e for e in entries if e.get("checkout_session_id") == checkout_session_id]
    return entries


def add_fault(simulator_url: str, **fault: Any) -> None:
    response = requests.post(f"{simulator_url}/_simulator/faults", json=fault, timeout=TIMEOUT)
    if response.status_code != 201:
        raise BuyerFlowError(f"simulator refused fault {fault}: {response.text}")


def clear_faults(simulator_url: str) -> None:
    """Drops every fault (and the request log, which the simulator resets together)."""
    response = requests.post(f"{simulator_url}/_simulator/reset", json={}, timeout=TIMEOUT)
    response.raise_for_status()
