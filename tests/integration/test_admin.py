"""The merchant console over HTTP against the simulator: sign-in (constant-time check, slowed
wrong guesses, its own expiring cookie), every /admin route refusing signed-out and CSRF-less
requests, the order list and page, and a refund from the form to Refunded."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness, csrf_token
from tests.support.servers import APP_VARIABLES

PASSWORD = "correct horse battery staple"
REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')

# Every console route, with its method; <ref> is filled in with a real order's reference.
ROUTES = [
    ("GET", "/admin"),
    ("GET", "/admin/orders/<ref>"),
    ("POST", "/admin/orders/<ref>/refund"),
    ("POST", "/admin/orders/<ref>/capture"),
    ("POST", "/admin/orders/<ref>/cancel"),
    ("GET", "/admin/wallets"),
    ("POST", "/admin/wallets/S01-0000000-0000000/charge"),
    ("POST", "/admin/logout"),
]


def sign_in(client: FlaskClient, password: str = PASSWORD) -> TestResponse:
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"password": password, "csrf_token": csrf_token(page)})


def paid_order(buyer: Buyer) -> str:
    buyer.add_to_cart("mug")
    checkout = buyer.pay("/checkout")
    assert checkout.response.status_code == 303
    return checkout.response.headers["Location"].rsplit("/", 1)[-1]


@pytest.fixture
def console(app_factory: AppFactory) -> Flask:
    return app_factory(ADMIN_PASSWORD=PASSWORD)


def test_without_admin_password_every_console_route_answers_404(app: Flask) -> None:
    client = app.test_client()
    for method, path in [*ROUTES, ("GET", "/admin/login")]:
        url = path.replace("<ref>", "a" * 22)
        if method == "GET":
            assert client.get(url).status_code == 404, url
    page = client.get("/")
    token = csrf_token(page)
    for method, path in [*ROUTES, ("POST", "/admin/login")]:
        if method == "POST":
            url = path.replace("<ref>", "a" * 22)
            answer = client.post(url, data={"csrf_token": token, "password": "x" * 20})
            assert answer.status_code == 404, url


def test_a_signed_out_request_is_sent_to_the_sign_in_page_on_every_route(
    console: Flask, simulator: SimulatorHarness
) -> None:
    buyer = Buyer(console.test_client(), simulator)
    reference = paid_order(buyer)
    client = console.test_client()
    token = csrf_token(client.get("/admin/login"))
    for method, path in ROUTES:
        url = path.replace("<ref>", reference)
        if method == "GET":
            answer = client.get(url)
        else:
            answer = client.post(
                url, data={"csrf_token": token, "amount": "1.00", "request_id": "r" * 22}
            )
        assert answer.status_code == 303, url
        assert answer.headers["Location"].endswith("/admin/login"), url
    assert simulator.operations("CreateRefund") == []
    assert simulator.operations("CaptureCharge") == []
    assert simulator.operations("CreateCharge") == []


def test_every_console_form_without_its_csrf_token_is_refused(
    console: Flask, simulator: SimulatorHarness
) -> None:
    buyer = Buyer(console.test_client(), simulator)
    reference = paid_order(buyer)
    client = console.test_client()
    assert sign_in(client).status_code == 303
    for method, path in [*ROUTES, ("POST", "/admin/login")]:
        if method == "POST":
            url = path.replace("<ref>", reference)
            answer = client.post(
                url, data={"amount": "1.00", "request_id": "r" * 22, "password": PASSWORD}
            )
            assert answer.status_code == 400, url
    assert simulator.operations("CreateRefund") == []


def test_the_right_password_signs_in_with_a_strict_cookie_of_its_own(console: Flask) -> None:
    client = console.test_client()
    answer = sign_in(client)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/admin")
    cookie = next(
        value
        for value in answer.headers.getlist("Set-Cookie")
        if value.startswith("staff_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie
    assert "Max-Age=28800" in cookie
    assert client.get("/admin").status_code == 200
    # A forged or tampered cookie is not a session.
    client.set_cookie(
        "staff_session",
        cookie.split(";")[0].split("=", 1)[1] + "x",
        path="/admin",
        domain="localhost",
    )
    assert client.get("/admin").status_code == 303


def test_a_wrong_password_gets_the_form_again_with_401_and_repeated_ones_are_slowed(
    console: Flask,
) -> None:
    client = console.test_client()
    for _ in range(5):
        answer = sign_in(client, "not the password")
        assert answer.status_code == 401
        assert "Wrong password." in answer.get_data(as_text=True)
        assert 'name="password"' in answer.get_data(as_text=True)
    # The sixth wrong guess locks this address out for a while...
    assert sign_in(client, "not the password either").status_code == 401
    locked = sign_in(client, PASSWORD)
    # ... and while locked, even the right password is not checked.
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) >= 1
    assert client.get("/admin").status_code == 303


def test_the_lock_is_shared_by_every_instance_through_the_database(
    app_factory: AppFactory,
) -> None:
    first = app_factory(ADMIN_PASSWORD=PASSWORD).test_client()
    second = app_factory(ADMIN_PASSWORD=PASSWORD).test_client()
    for _ in range(6):
        assert sign_in(first, "wrong guess here").status_code == 401
    assert sign_in(second, PASSWORD).status_code == 429


def order_page(client: FlaskClient, reference: str) -> TestResponse:
    page = client.get(f"/admin/orders/{reference}")
    assert page.status_code == 200
    return page


def form_request_id(page: TestResponse, action: str) -> str:
    html = page.get_data(as_text=True)
    form = html[html.index(f'action="{action}"') :]
    match = REQUEST_ID.search(form)
    assert match is not None
    return match.group(1)


def test_staff_find_the_order_and_refund_part_of_it_once_then_see_it_refunded(
    console: Flask, simulator: SimulatorHarness
) -> None:
    buyer = Buyer(console.test_client(), simulator)
    reference = paid_order(buyer)
    client = console.test_client()
    sign_in(client)
    listing = client.get("/admin").get_data(as_text=True)
    assert reference in listing
    assert client.get("/admin?state=paid").get_data(as_text=True).count(reference) >= 1
    assert reference not in client.get("/admin?state=authorized").get_data(as_text=True)

    page = order_page(client, reference)
    action = f"/admin/orders/{reference}/refund"
    form: dict[str, Any] = {
        "csrf_token": csrf_token(page),
        "request_id": form_request_id(page, action),
        "amount": "3.00",
    }
    first = client.post(action, data=form)
    again = client.post(action, data=form)  # the same form submitted twice
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"].endswith(f"/admin/orders/{reference}")
    assert len(simulator.operations("CreateRefund")) == 1

    shown = order_page(client, reference).get_data(as_text=True)
    assert 'data-testid="refund-state">pending' in shown
    assert "Refund of USD 3.00 requested" in shown or "requested" in shown

    refund_id = console.extensions["admin"].refund_rows.get(form["request_id"]).refund_id
    settled = simulator.http.post(
        f"{simulator.base_url}/_simulator/refunds/{refund_id}/outcome",
        json={"outcome": "Refunded"},
        timeout=5,
    )
    assert settled.status_code == 200, settled.text
    refreshed = order_page(client, reference).get_data(as_text=True)
    assert 'data-testid="refund-state">refunded' in refreshed
    assert 'data-testid="refunded">3.00' in refreshed
    order = console.extensions["shop"].store.orders.get(reference)
    assert order.refunded_amount == Decimal("3.00")
    assert order.refund_reserved_amount == Decimal(0)
    trail = console.extensions["admin"].audit.for_order(reference)
    assert [(e.actor, e.action, e.request_id) for e in trail][:1] == [
        ("staff", "refund", form["request_id"])
    ]


def test_a_refund_over_what_is_left_goes_back_with_a_plain_message_and_changes_nothing(
    console: Flask, simulator: SimulatorHarness
) -> None:
    buyer = Buyer(console.test_client(), simulator)
    reference = paid_order(buyer)
    client = console.test_client()
    sign_in(client)
    page = order_page(client, reference)
    action = f"/admin/orders/{reference}/refund"
    answer = client.post(
        action,
        data={
            "csrf_token": csrf_token(page),
            "request_id": form_request_id(page, action),
            "amount": "999.00",
        },
    )
    assert answer.status_code == 303
    shown = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "That is more than is left to refund" in shown
    assert simulator.operations("CreateRefund") == []
    order = console.extensions["shop"].store.orders.get(reference)
    assert order.refund_reserved_amount == 0
    assert order.refunded_amount == 0


def test_the_refund_command_prints_one_line_refunds_once_and_fails_on_refusal(
    console: Flask, simulator: SimulatorHarness
) -> None:
    buyer = Buyer(console.test_client(), simulator)
    reference = paid_order(buyer)
    runner = console.test_cli_runner()
    args = ["refund", reference, "2.00", "--request-id", "cli-request-0001"]
    first = runner.invoke(args=args)
    again = runner.invoke(args=args)
    assert first.exit_code == again.exit_code == 0
    assert first.output.count("\n") == 1
    assert first.output.startswith("started: Refund of USD 2.00 requested")
    assert len(simulator.operations("CreateRefund")) == 1
    refused = runner.invoke(args=["refund", reference, "999.00", "--request-id", "cli-request-02"])
    assert refused.exit_code == 1
    assert refused.output.startswith("refused: That is more than is left to refund")
    reconciled = runner.invoke(args=["reconcile"])
    assert reconciled.exit_code == 0
    assert "refunds: 0 replayed" in reconciled.output


def test_in_simulator_mode_the_generated_password_is_printed_once_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
    config.update({"INSTANCE_PATH": str(tmp_path / "instance"), "TESTING": True})
    first = create_app(config)
    try:
        printed = capsys.readouterr().err
        found = re.search(r"Merchant console \(/admin\) password: (\S+) \(kept in ", printed)
        assert found is not None, printed
        assert printed.count("Merchant console") == 1
        second = create_app(config)  # a restart, or another worker: the same instance folder
        try:
            assert "Merchant console" not in capsys.readouterr().err
            client = second.test_client()
            assert sign_in(client, found.group(1)).status_code == 303
            assert client.get("/admin").status_code == 200
        finally:
            second.extensions["shop"].close()
    finally:
        first.extensions["shop"].close()
