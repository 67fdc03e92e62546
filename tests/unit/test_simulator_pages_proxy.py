"""The simulator's buyer pages under the shop's port (offline mode): what goes through, what not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from werkzeug.test import Client

from amazonpay.simulator import Simulator
from app import create_app
from tests.support.servers import APP_VARIABLES

PREFIX = "/_amazon-pay-simulator"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Flask]:
    config: dict[str, object] = dict.fromkeys(APP_VARIABLES, "")
    config |= {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "TESTING": True,
        "APP_SIMULATOR_PUBLIC_URL": f"http://localhost{PREFIX}",
    }
    app = create_app(config)
    yield app
    app.extensions["shop"].close()


def test_the_page_loads_checkout_js_from_the_public_url(shop: Flask) -> None:
    page = shop.test_client().get("/wallet", base_url="http://localhost")
    assert f'<script src="http://localhost{PREFIX}/checkout.js"' in page.get_data(as_text=True)

    script = shop.test_client().get(f"{PREFIX}/checkout.js", base_url="http://localhost")
    assert script.status_code == 200
    assert f"'http://localhost{PREFIX}'" in script.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/_simulator/requests", "/_simulator/reset", "/v2/checkoutSessions", "/", "/x"]
)
def test_only_the_buyers_pages_go_through(shop: Flask, path: str) -> None:
    answer = shop.test_client().post(f"{PREFIX}{path}", base_url="http://localhost")
    assert answer.status_code == 404


def test_a_host_the_shop_does_not_serve_is_refused(shop: Flask) -> None:
    answer = shop.test_client().get(f"{PREFIX}/checkout.js", base_url="http://evil.example")
    assert (answer.status_code, answer.get_data(as_text=True)) == (400, "Unknown host.\n")


def test_a_large_body_is_refused_before_it_is_forwarded(shop: Flask) -> None:
    answer = shop.test_client().post(
        f"{PREFIX}/checkout/start", base_url="http://localhost", data={"x": "y" * 70_000}
    )
    assert answer.status_code == 413


def test_a_simulator_that_is_gone_is_a_502_not_a_stack_trace(shop: Flask) -> None:
    shop.extensions["simulator"].shutdown()
    answer = shop.test_client().get(f"{PREFIX}/checkout.js", base_url="http://localhost")
    assert answer.status_code == 502
    assert answer.get_data(as_text=True) == "The Amazon Pay simulator is not answering.\n"


def test_a_simulator_not_behind_a_proxy_ignores_forwarded_headers() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    simulator = Simulator(public_keys={"SANDBOX-X": key.public_key()})
    answer = Client(simulator).get(
        "/checkout.js",
        base_url="http://127.0.0.1:9",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/p"},
    )
    assert "'http://127.0.0.1:9'" in answer.get_data(as_text=True)
