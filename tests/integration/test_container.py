"""The image's own command outside Docker (no daemon here): docker-entrypoint.sh with the
Dockerfile's environment, from another working directory, on 0.0.0.0, a buyer using only the
shop's port. What could not run here (the build, `--user`, the published port) is in the README."""

from __future__ import annotations

import html
import json
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.browser import CHROMIUM_ARGS, CSP_LISTENER_SCRIPT, chromium_path
from tests.support.buyer import HttpBuyer
from tests.support.servers import (
    REPO_ROOT,
    ServerProcess,
    clean_environment,
    generate_key_pair,
    start_server,
    start_simulator,
)

PREFIX = "/_amazon-pay-simulator"
TIMEOUT = 15.0
_SCRIPT_SRC = re.compile(r'<script src="([^"]+/checkout\.js)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PERMISSION = re.compile(r'data-testid="charge-permission-id">([^<]+)<')


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments (continuation lines joined), keyed by instruction."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            found.setdefault(instruction.upper(), []).append(rest.strip())
    return found


def image_environment() -> dict[str, str]:
    """The image's ENV lines as a mapping."""
    pairs = [pair.split("=", 1) for line in dockerfile()["ENV"] for pair in shlex.split(line)]
    return {key: value for key, value in pairs}


def image_command() -> list[str]:
    """The CMD, with the image's /app/ mapped onto this checkout."""
    (cmd,) = dockerfile()["CMD"]
    return [part.replace("/app/", f"{REPO_ROOT}/") for part in json.loads(cmd)]


def outside_address() -> str:
    """This machine's address other than loopback, where there is one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # no packet is sent; only a route is chosen
            address = str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
    return "127.0.0.1" if address.startswith("127.") else address


def start_image(work: Path, extra: dict[str, str]) -> ServerProcess:
    """docker-entrypoint.sh as the image runs it; "{port}" in `extra` is the chosen port."""
    data = work / "data"
    data.mkdir(mode=0o1777, exist_ok=True)
    env = {k: v for k, v in clean_environment({}).items() if not k.startswith("APP_")}
    env |= image_environment()
    env |= {
        # pip installs into the image's PATH; here the same tools live in this virtualenv.
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "APP_INSTANCE_PATH": str(data / "instance"),
        "PORT": "{port}",
        **extra,
    }
    return start_server(
        "image",
        argv_template=image_command(),
        env=env,
        log_dir=work / "logs",
        health_path="/healthz",
        cwd=work,  # not the app's folder: the entrypoint must find it itself
        timeout=60,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def image(work: Path) -> Iterator[ServerProcess]:
    """The image run with no variables at all: `docker run -p 8000:8000 <image>`."""
    server = start_image(work, {})
    yield server
    server.stop()


def test_image_command_serves_the_offline_demo_through_the_shop_port_only(
    work: Path, image: ServerProcess
) -> None:
    shop = f"http://localhost:{image.port}"  # the name `-p 8000:8000` gives the Docker host
    pages = shop + PREFIX
    buyer = HttpBuyer(shop, pages)

    wallet_page = buyer.get("/wallet")
    assert _SCRIPT_SRC.findall(wallet_page.text) == [f"{pages}/checkout.js"]
    script = requests.get(f"{pages}/checkout.js", timeout=TIMEOUT)
    assert script.status_code == 200
    assert f"'{pages}'" in script.text  # its fallback base carries the prefix
    session_id = buyer.start_at_amazon(buyer.button_config("/wallet"))
    hosted = requests.get(f"{pages}/hosted/{session_id}", timeout=TIMEOUT)
    assert hosted.status_code == 200
    assert f'href="{PREFIX}/_simulator-static/hosted.css"' in hosted.text
    assert f'action="{PREFIX}/hosted/{session_id}/choose"' in hosted.text
    assert requests.get(f"{pages}/_simulator-static/hosted.css", timeout=TIMEOUT).ok
    back = buyer.choose_at_amazon(session_id, "success")
    assert back.startswith(f"{shop}/")

    result = buyer.get(back)
    assert "Amazon Pay is saved" in result.text, result.text[:500]
    found = _PERMISSION.search(result.text)
    assert found is not None
    permission_id = found.group(1).strip()

    # The buyer fixes the card on the wallet page: its CSRF cookie and form go through the proxy.
    wallet = f"{pages}/jr/your-account/ba/{permission_id}"
    page = buyer.http.get(wallet, timeout=TIMEOUT)
    assert page.status_code == 200
    cookie = next(c for c in buyer.http.cookies if c.name == "amazon_pay_simulator_csrf")
    assert cookie.path == f"{PREFIX}/jr/"
    token = _CSRF.search(page.text)
    assert token is not None
    fixed = buyer.http.post(
        wallet,
        data={"csrf_token": html.unescape(token.group(1))},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert (fixed.status_code, fixed.headers["Location"]) == (
        303,
        f"{PREFIX}/jr/your-account/ba/{permission_id}?updated=1",
    )

    # Only the buyer's pages are published: not the signed API, not the control API.
    assert requests.get(f"{pages}/_simulator/requests", timeout=TIMEOUT).status_code == 404
    assert requests.post(f"{pages}/v2/checkoutSessions", timeout=TIMEOUT).status_code == 404
    # Everything lives under APP_INSTANCE_PATH, nothing in the working directory.
    instance = work / "data" / "instance"
    assert (instance / "storefront.sqlite3").exists()
    simulator_port = int((instance / "simulator.port").read_text())
    assert sorted(p.name for p in work.iterdir()) == ["data", "logs"]
    # The simulator itself answers on loopback only.
    address = outside_address()
    if address != "127.0.0.1":
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{address}:{simulator_port}/checkout.js", timeout=TIMEOUT)
    buyer.close()


def test_a_browser_on_another_host_gets_the_demo_with_public_url(work: Path) -> None:
    """PUBLIC_URL names the address the browser uses; Chromium runs the whole wallet setup."""
    address = outside_address()
    server = start_image(work, {"PUBLIC_URL": f"http://{address}:{{port}}"})
    shop = f"http://{address}:{server.port}"
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=str(chromium_path()), args=CHROMIUM_ARGS
            )
            context = browser.new_context()
            context.set_default_timeout(TIMEOUT * 1000)
            context.add_init_script(CSP_LISTENER_SCRIPT)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{shop}/wallet")
            page.locator("button#amazon-pay-button").click()
            expect(page.get_by_test_id("hosted-page")).to_be_visible()
            assert page.url.startswith(f"{shop}{PREFIX}/hosted/")
            page.get_by_test_id("pay-method-1111").click()
            expect(page.get_by_test_id("success")).to_contain_text("saved as your payment method")
            assert page.url.startswith(f"{shop}/")
            violations = page.evaluate("window.__cspViolations")
            browser.close()
    finally:
        server.stop()
    assert violations == []
    assert [m for m in console if "Content Security Policy" in m] == []


def test_image_command_with_credentials_serves_a_real_shop_and_is_healthy(work: Path) -> None:
    keys = generate_key_pair(work / "keys")
    simulator = start_simulator(keys=[keys], log_dir=work / "logs")
    address = outside_address()
    try:
        server = start_image(
            work,
            {
                "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
                "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
                "AMAZON_PAY_ENDPOINT": simulator.base_url,
                "AMAZON_PAY_CHECKOUT_JS_URL": simulator.base_url + "/checkout.js",
                "SECRET_KEY": "0123456789abcdef-container-test-secret",
                "PUBLIC_URL": f"http://{address}:{{port}}",
            },
        )
        try:
            shop = f"http://{address}:{server.port}"
            buyer = HttpBuyer(shop, simulator.base_url)
            trip = buyer.checkout("success", wallet=True)
            assert "Amazon Pay is saved" in buyer.get(trip.return_url).text
            assert requests.get(f"{shop}{PREFIX}/checkout.js", timeout=TIMEOUT).status_code == 404
            buyer.close()
            # The image's HEALTHCHECK, as Docker runs it inside the container.
            (healthcheck,) = dockerfile()["HEALTHCHECK"]
            argv = json.loads(healthcheck.split(" CMD ", 1)[1])
            argv[0] = sys.executable
            env = image_environment() | {
                "PORT": str(server.port),
                "PUBLIC_URL": f"http://{address}:{server.port}",
            }
            check = subprocess.run(argv, env=env, timeout=TIMEOUT, check=False)
            assert check.returncode == 0, server.log_tail()
            assert "database schema is current" in server.log_tail(100_000)
        finally:
            server.stop()
    finally:
        simulator.stop()
