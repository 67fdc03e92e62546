"""Staff charging a buyer's saved wallet (merchant-initiated, `chargeInitiator: MITU`) from the
console's wallet list and from `flask charge`, against the simulator on SQLite and PostgreSQL
(docs/contract.md "The merchant console")."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from storefront.states import OrderSource, OrderState
from storefront.views.admin import merchant_charge_reference
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness, csrf_token
from tests.integration.test_admin import PASSWORD, sign_in
from tests.integration.test_saved_wallet_flows import control, save_wallet

CHARGE_FORM = re.compile(
    r'action="/admin/wallets/(?P<cp>[^/"]+)/charge".*?name="csrf_token" value="(?P<csrf>[^"]+)"'
    r'.*?name="request_id" value="(?P<rid>[^"]+)"',
    re.S,
)


def wallet_forms(client: FlaskClient) -> dict[str, dict[str, str]]:
    """The wallet list's charge forms by charge permission id: csrf_token and request_id."""
    page = client.get("/admin/wallets")
    assert page.status_code == 200
    return {
        m["cp"]: {"csrf_token": m["csrf"], "request_id": m["rid"]}
        for m in CHARGE_FORM.finditer(page.get_data(as_text=True))
    }


def staff_with_a_saved_wallet(
    app: Flask, simulator: SimulatorHarness
) -> tuple[FlaskClient, str, dict[str, str]]:
    """A buyer saved a wallet; staff signed in: (staff client, permission id, its charge form)."""
    permission_id = save_wallet(Buyer(app.test_client(), simulator))
    staff = app.test_client()
    assert sign_in(staff).status_code == 303
    forms = wallet_forms(staff)
    assert permission_id in forms
    return staff, permission_id, forms[permission_id]


def charge(client: FlaskClient, permission_id: str, form: dict[str, str], amount: str) -> Any:
    return client.post(f"/admin/wallets/{permission_id}/charge", data={**form, "amount": amount})


def shown(client: FlaskClient, answer: TestResponse) -> str:
    assert answer.status_code == 303
    return client.get(answer.headers["Location"]).get_data(as_text=True)


def test_staff_charge_a_saved_wallet_once_per_form_and_the_order_shows_as_merchant(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)

    first = charge(staff, permission_id, form, "12.50")
    again = charge(staff, permission_id, form, "99.00")  # the same form again, even altered

    reference = merchant_charge_reference(form["request_id"])
    assert first.headers["Location"] == again.headers["Location"] == f"/admin/orders/{reference}"
    [created] = simulator.operations("CreateCharge")
    assert created["status"] == 201
    order = app.extensions["shop"].store.orders.get(reference)
    assert order is not None
    assert (order.source, order.status) == (OrderSource.MERCHANT, OrderState.PAID)
    assert order.amount == order.captured_amount == Decimal("12.50")
    assert order.charge_permission_id == permission_id
    at_amazon = app.extensions["shop"].client.get_charge(order.charge_id)
    assert at_amazon.raw["chargeInitiator"] == "MITU"
    assert at_amazon.state_raw == "Captured"

    page = shown(staff, again)
    assert "USD 12.50 charged to the saved wallet." in page
    listing = staff.get("/admin").get_data(as_text=True)
    row = listing[listing.index(f'data-reference="{reference}"') :]
    assert "<td>merchant</td>" in row[: row.index("</tr>")]
    trail = app.extensions["admin"].audit.for_order(reference)
    assert [(e.actor, e.action, e.request_id) for e in trail] == [
        ("staff", "charge", form["request_id"])
    ] * 2
    # A fresh form is a new charge.
    fresh = wallet_forms(staff)[permission_id]
    assert fresh["request_id"] != form["request_id"]
    assert charge(staff, permission_id, fresh, "1.00").status_code == 303
    assert len(simulator.operations("CreateCharge")) == 2


def test_with_the_authorize_intent_the_charge_waits_for_staff_to_capture_it(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD, AMAZON_PAY_PAYMENT_INTENT="Authorize")
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    page = shown(staff, charge(staff, permission_id, form, "20.00"))
    assert "USD 20.00 authorized on the saved wallet" in page
    assert 'data-testid="capture-form"' in page
    reference = merchant_charge_reference(form["request_id"])
    order = app.extensions["shop"].store.orders.get(reference)
    assert order is not None
    assert (order.status, order.captured_amount) == (OrderState.AUTHORIZED, Decimal(0))
    at_amazon = app.extensions["shop"].client.get_charge(order.charge_id)
    assert (at_amazon.raw["chargeInitiator"], at_amazon.state_raw) == ("MITU", "Authorized")


def test_a_declined_charge_goes_back_to_the_wallets_in_plain_words_and_is_not_retried(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    control(
        simulator,
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": "HardDeclined", "count": 2},
    )
    answer = charge(staff, permission_id, form, "5.00")
    assert answer.headers["Location"] == "/admin/wallets"
    page = shown(staff, answer)
    assert "Amazon declined the charge (HardDeclined). Nothing was charged." in page
    assert "The buyer must update the payment method at Amazon first." in page
    again = charge(staff, permission_id, form, "5.00")
    assert again.headers["Location"] == "/admin/wallets"
    assert len(simulator.operations("CreateCharge")) == 1  # the same form is not tried again
    assert app.extensions["shop"].store.orders.recent() == []


def test_a_closed_wallet_offers_no_form_and_a_charge_on_it_is_refused(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    control(simulator, f"charge-permissions/{permission_id}/buyer", {"action": "close"})
    page = shown(staff, charge(staff, permission_id, form, "5.00"))
    assert "This saved wallet is closed at Amazon and can no longer be charged." in page
    assert permission_id not in wallet_forms(staff)  # Amazon's answer was recorded
    assert "closed: can no longer be charged" in page
    made = [e for e in simulator.operations("CreateCharge") if e["status"] == 201]
    assert made == []
    assert app.extensions["shop"].store.orders.recent() == []


def test_an_unknown_wallet_or_a_bad_amount_is_refused_without_calling_amazon(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    unknown = charge(staff, "S01-0000000-0000000", form, "5.00")
    assert "There is no such saved wallet." in shown(staff, unknown)
    for amount in ("", "0", "-1", "1.234", "abc"):
        page = shown(staff, charge(staff, permission_id, form, amount))
        assert "Enter the amount to charge, e.g. 12.00." in page
    expired = charge(staff, permission_id, {**form, "request_id": "short"}, "5.00")
    assert "This form has expired. Please try again." in shown(staff, expired)
    assert simulator.operations("CreateCharge") == []


def test_a_lost_answer_shows_being_confirmed_and_a_refresh_makes_the_order(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    simulator.fault("CreateCharge", kind="drop", count=3)  # applied, every answer lost
    answer = charge(staff, permission_id, form, "7.00")
    reference = merchant_charge_reference(form["request_id"])
    assert answer.headers["Location"] == f"/admin/orders/{reference}"
    assert app.extensions["shop"].store.orders.get(reference) is None
    # The redirect's page asks Amazon again with the same key and finds the charge.
    page = shown(staff, answer)
    assert 'data-testid="order-state">paid' in page
    keys = {e["idempotency_key"] for e in simulator.operations("CreateCharge")}
    assert len(keys) == 1
    order = app.extensions["shop"].store.orders.get(reference)
    assert order is not None
    assert order.source is OrderSource.MERCHANT


def test_the_charge_command_prints_one_line_charges_once_and_fails_on_refusal(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    permission_id = save_wallet(Buyer(app.test_client(), simulator))
    runner = app.test_cli_runner()
    args = ["charge", permission_id, "3.00", "--request-id", "cli-charge-0001"]
    first = runner.invoke(args=args)
    again = runner.invoke(args=args)
    assert first.exit_code == again.exit_code == 0, first.output
    assert first.output.count("\n") == again.output.count("\n") == 1
    reference = merchant_charge_reference("cli-charge-0001")
    assert first.output == f"done: USD 3.00 charged to the saved wallet. Order {reference}.\n"
    assert len(simulator.operations("CreateCharge")) == 1
    unknown = runner.invoke(
        args=["charge", "S01-0000000-0000000", "3.00", "--request-id", "cli-charge-02"]
    )
    assert (unknown.exit_code, unknown.output) == (1, "refused: There is no such saved wallet.\n")
    bad = runner.invoke(args=["charge", permission_id, "3.001", "--request-id", "cli-charge-03"])
    assert bad.exit_code == 1
    assert bad.output.startswith("refused: the amount must be positive")
    trail = app.extensions["admin"].audit.for_order(reference)
    assert {(e.actor, e.action) for e in trail} == {("cli", "charge")}


def test_the_wallet_list_needs_a_signed_in_staff_member_and_a_csrf_token(
    app_factory: AppFactory, simulator: SimulatorHarness
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD)
    staff, permission_id, form = staff_with_a_saved_wallet(app, simulator)
    stranger = app.test_client()
    assert stranger.get("/admin/wallets").headers["Location"].endswith("/admin/login")
    token = csrf_token(stranger.get("/admin/login"))
    answer = stranger.post(
        f"/admin/wallets/{permission_id}/charge",
        data={**form, "csrf_token": token, "amount": "1.00"},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/admin/login")
    no_token = staff.post(
        f"/admin/wallets/{permission_id}/charge",
        data={"request_id": form["request_id"], "amount": "1.00"},
    )
    assert no_token.status_code == 400
    assert simulator.operations("CreateCharge") == []
