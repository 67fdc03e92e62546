"""What every response promises: security headers, CSRF, error pages, hostile input, health."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.conftest import (
    WALLET_FAILED,
    AppFactory,
    Buyer,
    SimulatorHarness,
    button_config,
    csrf_token,
    is_postgres,
)
from tests.support.postgres import PostgresServer

API_OPERATIONS = {
    "GetCheckoutSession",
    "CompleteCheckoutSession",
    "UpdateCheckoutSession",
    "GetCharge",
}


@pytest.mark.parametrize("path", ["/", "/cart", "/checkout", "/wallet", "/healthz", "/nope"])
def test_security_headers_on_every_response(
    client: FlaskClient, simulator: SimulatorHarness, path: str
) -> None:
    headers = client.get(path).headers

    csp = headers["Content-Security-Policy"]
    assert f"script-src 'self' {simulator.base_url};" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "base-uri 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_amazons_checkout_js_gets_amazons_hosts_but_never_inline_script(
    app_factory: AppFactory,
) -> None:
    app = app_factory(
        AMAZON_PAY_CHECKOUT_JS_URL="https://static-eu.payments-amazon.com/checkout.js"
    )

    csp = app.test_client().get("/wallet").headers["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert "https://static-eu.payments-amazon.com" in directives["script-src"]
    assert "https://*.payments-amazon.com" in directives["frame-src"]
    assert "unsafe-inline" not in directives["script-src"]
    assert "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"


def test_session_cookie_is_httponly_and_lax(client: FlaskClient) -> None:
    cookie = client.get("/wallet").headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in tests


def test_session_cookie_is_secure_over_https(client: FlaskClient) -> None:
    response = client.get("/wallet", base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in client.get("/wallet").headers


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1"])
@pytest.mark.parametrize("path", ["/", "/wallet", "/checkout/return?ref=x", "/healthz", "/nope"])
def test_a_host_other_than_public_url_is_refused(client: FlaskClient, host: str, path: str) -> None:
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 400
    assert host not in response.get_data(as_text=True)


def test_the_signed_return_url_is_built_from_public_url(app_factory: AppFactory) -> None:
    client = app_factory(PUBLIC_URL="https://shop.example:8443").test_client()
    page = client.get("/wallet", base_url="https://shop.example:8443")
    payload = json.loads(button_config(page)["createCheckoutSessionConfig"]["payloadJSON"])
    return_url = payload["webCheckoutDetails"]["checkoutResultReturnUrl"]
    assert return_url.startswith("https://shop.example:8443/checkout/return?ref=")


@pytest.mark.parametrize("product_id", ["", "nope", "../mug", "mug\r\nX: y", "<b>mug</b>"])
def test_unknown_product_is_refused_clearly_and_the_cart_is_untouched(
    client: FlaskClient, product_id: str
) -> None:
    token = csrf_token(client.get("/"))
    client.post("/cart/add", data={"product_id": "mug", "csrf_token": token})

    response = client.post("/cart/add", data={"product_id": product_id, "csrf_token": token})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "That product is not in our catalog" in page
    assert "<b>mug</b>" not in page
    assert 'data-testid="cart-count">1 item<' in client.get("/").get_data(as_text=True)


def test_pages_have_no_inline_script_code(client: FlaskClient) -> None:
    text = client.get("/wallet").get_data(as_text=True)
    for match in re.finditer(r"<script([^>]*)>(.*?)</script>", text, re.S):
        attributes, body = match.groups()
        assert body.strip() == "" or 'type="application/json"' in attributes


def test_add_to_cart_works_as_a_plain_form(client: FlaskClient) -> None:
    token = csrf_token(client.get("/"))

    response = client.post("/cart/add", data={"product_id": "mug", "csrf_token": token})

    assert response.status_code == 303
    assert "Stoneware mug" in client.get("/cart").get_data(as_text=True)
    cleared = client.post("/cart/clear", data={"csrf_token": token})
    assert cleared.status_code == 303
    assert 'data-testid="empty-cart"' in client.get("/cart").get_data(as_text=True)


@pytest.mark.parametrize("token", [None, "", "forged", "x" * 43])
def test_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, token: str | None
) -> None:
    client.get("/")
    data = {"product_id": "mug"}
    if token is not None:
        data["csrf_token"] = token

    response = client.post("/cart/add", data=data)

    assert response.status_code == 400
    assert 'data-testid="error-page"' in response.get_data(as_text=True)
    assert 'data-testid="empty-cart"' in client.get("/cart").get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/does-not-exist", 404),
        ("GET", "/checkout/result/not-a-reference", 404),
        ("GET", "/checkout/result/AAAAAAAAAAAAAAAAAAAAAA", 404),
        ("DELETE", "/checkout", 405),
        ("POST", "/checkout/return", 405),
        ("GET", "/cart/add", 405),
        ("GET", "/static/../app.py", 404),
    ],
)
def test_error_pages_are_ours(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method)

    text = response.get_data(as_text=True)
    assert response.status_code == status
    assert 'data-testid="error-page"' in text
    assert "Traceback" not in text
    assert "Werkzeug" not in text


def test_oversized_body_is_refused_with_our_page(client: FlaskClient) -> None:
    token = csrf_token(client.get("/"))
    response = client.post("/cart/add", data={"product_id": "x" * 200_000, "csrf_token": token})
    assert response.status_code in (400, 413)
    assert 'data-testid="error-page"' in response.get_data(as_text=True)


HOSTILE_QUERIES = [
    "",
    "amazonCheckoutSessionId=",
    "amazonCheckoutSessionId=../../charges",
    "amazonCheckoutSessionId=%2e%2e%2f%2e%2e%2f",
    "amazonCheckoutSessionId=abc%0d%0aSet-Cookie:%20x=1",
    "amazonCheckoutSessionId=" + "a" * 1000,
    "amazonCheckoutSessionId=%00%ff%fe",
    "amazonCheckoutSessionId=<script>alert(1)</script>",
    "amazonCheckoutSessionId=5c4a0a43-4b34-4d85-9e3b-2f2f1c0e9a11",
    "amazonCheckoutSessionId=a&amazonCheckoutSessionId=b",
    "ref=../../&amazonCheckoutSessionId=5c4a0a43-4b34-4d85-9e3b-2f2f1c0e9a11",
    "ref=AAAAAAAAAAAAAAAAAAAAAA&amazonCheckoutSessionId=5c4a0a43-4b34-4d85-9e3b-2f2f1c0e9a11",
    "ref=%ff%fe&amazonCheckoutSessionId=%ff",
    "amazonCheckoutSessionId[]=x",
    "x=" + "y" * 5000,
    "amazonCheckoutSessionId=" + "a" * 3000,
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: q[:50])
def test_hostile_return_urls_never_500_and_never_reach_amazon(
    client: FlaskClient, simulator: SimulatorHarness, query: str
) -> None:
    response = client.get(f"/checkout/return?{query}")

    assert (response.status_code, response.headers["Location"]) == (303, "/wallet")
    assert WALLET_FAILED in client.get(response.headers["Location"]).get_data(as_text=True)
    assert not [e for e in simulator.requests_log() if e.get("operation") in API_OPERATIONS]


@pytest.mark.parametrize(
    "session_value",
    ["", "../x", "%2e%2e%2f", "a%0d%0ab", "a" * 1000, "short", "<b>x</b>"],
    ids=lambda v: v[:20],
)
def test_malformed_id_on_a_real_return_url_fails_without_calling_amazon(
    buyer: Buyer, simulator: SimulatorHarness, session_value: str
) -> None:
    buyer.add_to_cart()
    _session_id, config = buyer.press_button("/checkout")
    payload = json.loads(config["createCheckoutSessionConfig"]["payloadJSON"])
    return_url = payload["webCheckoutDetails"]["checkoutResultReturnUrl"]

    response = buyer.client.get(f"{return_url}&amazonCheckoutSessionId={session_value}")

    assert (response.status_code, response.headers["Location"]) == (303, "/checkout")
    assert not [e for e in simulator.requests_log() if e.get("operation") in API_OPERATIONS]


def test_return_responses_are_not_cached(client: FlaskClient) -> None:
    response = client.get("/checkout/return?amazonCheckoutSessionId=x")
    assert response.headers["Cache-Control"] == "no-store"


def test_error_flag_never_echoes_input(client: FlaskClient) -> None:
    text = client.get("/wallet?error=<script>x</script>").get_data(as_text=True)
    assert "<script>x" not in text
    assert 'data-testid="flash-error"' not in text


def test_the_failure_message_shows_once_even_for_a_browser_without_its_old_cookie(
    client: FlaskClient,
) -> None:
    client.get("/")  # the buyer had a session before going to Amazon...
    client.delete_cookie("session")  # ...which this browser lost on the way back

    response = client.get("/checkout/return?amazonCheckoutSessionId=../x")

    assert (response.status_code, response.headers["Location"]) == (303, "/wallet")
    assert WALLET_FAILED in client.get("/wallet").get_data(as_text=True)
    assert WALLET_FAILED not in client.get("/wallet").get_data(as_text=True)


def test_healthz_reports_the_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_gone(
    app_factory: AppFactory, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if is_postgres(database_url):
        server: PostgresServer = request.getfixturevalue("postgres_server")
        doomed = server.create_database("doomed")
        app = app_factory(database_url=doomed)
        server.drop_database(doomed)  # WITH (FORCE): the pooled connections die too
    else:
        db = tmp_path / "doomed" / "shop.db"
        db.parent.mkdir()
        app = app_factory(database_url=f"sqlite:///{db}")
        app.extensions["shop"].store.engine.dispose()
        shutil.rmtree(db.parent)  # the directory vanished: SQLite cannot open or create the file

    response = app.test_client().get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["database"] != "ok"


def test_unexpected_errors_show_our_500_page(app: Flask) -> None:
    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/_boom")

    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert 'data-testid="error-page"' in text
    assert "secret internals" not in text


def test_forwarded_host_and_proto_are_honoured_only_behind_a_declared_proxy(
    app_factory: AppFactory,
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}
    behind = app_factory(APP_TRUST_PROXY="true", PUBLIC_URL="https://shop.example")
    page = behind.test_client().get("/wallet", headers=forwarded)

    payload = json.loads(button_config(page)["createCheckoutSessionConfig"]["payloadJSON"])
    assert payload["webCheckoutDetails"]["checkoutResultReturnUrl"].startswith(
        "https://shop.example/checkout/return?ref="
    )
    assert "Secure" in page.headers["Set-Cookie"]
    # Without the declaration the forwarded host is not believed: the request is for localhost.
    direct = app_factory(PUBLIC_URL="https://shop.example")
    refused = direct.test_client().get("/wallet", headers={**forwarded, "Host": "localhost"})
    assert refused.status_code == 400
