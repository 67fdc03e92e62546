"""Paying with a saved wallet, keeping it healthy and removing it, through the app against the
simulator (docs/contract.md "Using a saved wallet"). Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from storefront.states import OrderSource, OrderState, WalletState
from tests.integration.conftest import (
    PAYMENT_FAILED,
    AppFactory,
    Buyer,
    SimulatorHarness,
    csrf_token,
)
from tests.integration.test_admin import PASSWORD, sign_in

PAY_FORM = re.compile(
    r'<form method="post" action="/checkout/saved".*?name="ref" value="([^"]+)"'
    r'.*?name="charge_permission_id" value="([^"]+)".*?>(Pay with [^<]*)</button>',
    re.S,
)
REMOVED = "Amazon Pay was removed from your payment methods."
PAY_BUTTON = 'data-testid="pay-with-saved-wallet"'


def save_wallet(buyer: Buyer) -> str:
    """Save Amazon Pay on /wallet (card 1111); -> its charge permission id."""
    checkout = buyer.pay("/wallet", "1111")
    assert checkout.response.status_code == 303
    page = buyer.follow(checkout.response)
    assert page.status_code == 200
    found = re.search(r'data-testid="charge-permission-id">([^<]+)<', page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def pay_form(buyer: Buyer) -> tuple[str, str, str, str]:
    """The checkout page's first "Pay with" form: (csrf, ref, charge permission id, label)."""
    page = buyer.client.get("/checkout")
    assert page.status_code == 200
    match = PAY_FORM.search(page.get_data(as_text=True))
    assert match is not None, "no Pay with form on /checkout"
    return csrf_token(page), match.group(1), match.group(2), match.group(3)


def submit(buyer: Buyer, csrf: str, ref: str, permission_id: str, **extra: str) -> Any:
    return buyer.client.post(
        "/checkout/saved",
        data={"csrf_token": csrf, "ref": ref, "charge_permission_id": permission_id, **extra},
    )


def control(simulator: SimulatorHarness, path: str, payload: dict[str, Any]) -> None:
    response = simulator.http.post(f"{simulator.base_url}/_simulator/{path}", json=payload)
    assert response.status_code in (200, 201), response.text


def test_save_then_pay_with_the_saved_wallet_charges_once(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, form_permission, label = pay_form(buyer)
    assert form_permission == permission_id
    assert label == "Pay with Visa ****1111"

    answer = submit(buyer, csrf, ref, permission_id, amount="0.01")
    again = submit(buyer, csrf, ref, permission_id)

    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/checkout/result/{ref}"
    assert again.headers["Location"] == f"/checkout/result/{ref}"
    [charge] = simulator.operations("CreateCharge")
    result = buyer.client.get(answer.headers["Location"])
    assert result.status_code == 200
    assert 'data-testid="success"' in result.get_data(as_text=True)
    assert len(simulator.operations("CreateCharge")) == 1
    order = app.extensions["shop"].store.orders.get(ref)
    assert order is not None
    assert (order.source, order.status) == (OrderSource.SAVED_WALLET, OrderState.PAID)
    assert order.amount == order.captured_amount  # the cart's amount, not the form's 0.01
    cart = buyer.client.get("/cart")
    assert 'data-testid="empty-cart"' in cart.get_data(as_text=True)
    assert charge["status"] == 201


def test_a_hard_decline_sends_the_buyer_to_fix_the_payment_method(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    control(
        simulator,
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": "HardDeclined", "count": 1},
    )

    answer = submit(buyer, csrf, ref, permission_id)

    assert (answer.status_code, answer.headers["Location"]) == (303, "/checkout")
    page = buyer.follow(answer).get_data(as_text=True)
    assert PAYMENT_FAILED in page
    link = f"{simulator.base_url}/jr/your-account/ba/{permission_id}"
    assert f'href="{link}"' in page
    assert len(simulator.operations("CreateCharge")) == 1


def test_an_expired_card_is_shown_with_the_update_link_and_pays_once_fixed(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    _, ref, _, _ = pay_form(buyer)
    control(simulator, f"charge-permissions/{permission_id}/buyer", {"action": "expire_card"})
    # Amazon's IPN told us (here: the wallet's state was confirmed long ago).
    store = app.extensions["shop"].store
    with store.engine.begin() as conn:
        store.wallets.mark_stale(conn, permission_id)

    page = buyer.client.get("/checkout").get_data(as_text=True)

    assert PAY_BUTTON not in page
    assert f'href="{simulator.base_url}/jr/your-account/ba/{permission_id}"' in page
    wallet_page = buyer.client.get("/wallet").get_data(as_text=True)
    assert "Needs an update at Amazon" in wallet_page
    control(simulator, f"charge-permissions/{permission_id}/buyer", {"action": "fix_card"})
    csrf, again_ref, _, _ = pay_form(buyer)
    assert again_ref == ref
    answer = submit(buyer, csrf, ref, permission_id)
    assert answer.headers["Location"] == f"/checkout/result/{ref}"


def test_a_closed_wallet_disappears_and_the_buyer_is_invited_to_save_again(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    control(simulator, f"charge-permissions/{permission_id}/buyer", {"action": "close"})

    answer = submit(buyer, csrf, ref, permission_id)

    page = buyer.follow(answer).get_data(as_text=True)
    assert PAYMENT_FAILED in page
    assert 'data-testid="save-again-link"' in page
    assert PAY_BUTTON not in page
    method = app.extensions["shop"].store.wallets.get(permission_id)
    assert method is not None
    assert method.state == WalletState.CLOSED


def test_a_lost_answer_shows_being_confirmed_and_the_refresh_settles_it(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    simulator.fault("CreateCharge", kind="drop", count=3)

    answer = submit(buyer, csrf, ref, permission_id)

    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert 'data-testid="pending"' in body
    assert f'url=/checkout/result/{ref}"' in body
    assert PAYMENT_FAILED not in body
    refreshed = buyer.client.get(f"/checkout/result/{ref}")
    assert 'data-testid="success"' in refreshed.get_data(as_text=True)
    keys = {e["idempotency_key"] for e in simulator.operations("CreateCharge")}
    assert len(keys) == 1


def test_a_foreign_charge_permission_is_refused_without_calling_amazon(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    other = Buyer(app.test_client(), simulator)
    theirs = save_wallet(other)
    save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    before = len(simulator.requests_log())

    answer = submit(buyer, csrf, ref, theirs)

    assert (answer.status_code, answer.headers["Location"]) == (303, "/checkout")
    assert len(simulator.requests_log()) == before
    other.http.close()


def test_remove_closes_the_wallet_once_and_it_is_no_longer_offered(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    page = buyer.client.get("/wallet")
    csrf = csrf_token(page)
    assert 'action="/wallet/remove"' in page.get_data(as_text=True)

    answer = buyer.client.post(
        "/wallet/remove", data={"csrf_token": csrf, "charge_permission_id": permission_id}
    )
    again = buyer.client.post(
        "/wallet/remove", data={"csrf_token": csrf, "charge_permission_id": permission_id}
    )

    assert (answer.status_code, answer.headers["Location"]) == (303, "/wallet")
    assert again.headers["Location"] == "/wallet"
    shown = buyer.client.get("/wallet").get_data(as_text=True)
    assert REMOVED in shown
    assert "Closed" in shown
    [close] = simulator.operations("CloseChargePermission")
    assert close["status"] == 200
    buyer.add_to_cart("mug")
    assert PAY_BUTTON not in buyer.client.get("/checkout").get_data(as_text=True)


def test_remove_refuses_another_buyers_wallet_without_calling_amazon(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    other = Buyer(app.test_client(), simulator)
    theirs = save_wallet(other)
    page = buyer.client.get("/")
    before = len(simulator.requests_log())

    answer = buyer.client.post(
        "/wallet/remove", data={"csrf_token": csrf_token(page), "charge_permission_id": theirs}
    )

    assert answer.headers["Location"] == "/wallet"
    assert len(simulator.requests_log()) == before
    assert REMOVED not in buyer.client.get("/wallet").get_data(as_text=True)
    method = app.extensions["shop"].store.wallets.get(theirs)
    assert method is not None
    assert method.state == WalletState.CHARGEABLE
    other.http.close()


def test_saving_again_adds_the_new_wallet_first(buyer: Buyer) -> None:
    first = save_wallet(buyer)
    second = save_wallet(buyer)
    page = buyer.client.get("/wallet").get_data(as_text=True)
    shown = re.findall(r'data-testid="charge-permission-id">([^<]+)<', page)
    assert shown == [second, first]


def test_a_lost_close_is_pending_and_finished_by_reconcile(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    page = buyer.client.get("/wallet")
    simulator.fault("CloseChargePermission", status=503, count=3)

    buyer.client.post(
        "/wallet/remove",
        data={"csrf_token": csrf_token(page), "charge_permission_id": permission_id},
    )

    assert REMOVED not in buyer.client.get("/wallet").get_data(as_text=True)
    result = app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    assert "saved-wallet removals: 1 of 1 settled" in result.output
    method = app.extensions["shop"].store.wallets.get(permission_id)
    assert method is not None
    assert method.state == WalletState.CLOSED


def test_reconcile_settles_a_charge_whose_answer_was_lost(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    simulator.fault("CreateCharge", kind="drop", count=3)
    submit(buyer, csrf, ref, permission_id)

    result = app.test_cli_runner().invoke(args=["reconcile"])

    assert result.exit_code == 0, result.output
    assert "saved-wallet charges: reconciled 1: 1 completed" in result.output
    order = app.extensions["shop"].store.orders.get(ref)
    assert order is not None
    assert order.status == OrderState.PAID


@pytest.mark.parametrize("code", ["SoftDeclined", "ProcessingFailure"])
def test_a_soft_decline_is_retried_once_through_the_app(
    buyer: Buyer, simulator: SimulatorHarness, code: str
) -> None:
    permission_id = save_wallet(buyer)
    buyer.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(buyer)
    count = 3 if code == "ProcessingFailure" else 1  # a 500: the client's tries are new attempts
    control(
        simulator,
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": code, "count": count},
    )

    answer = submit(buyer, csrf, ref, permission_id)

    assert answer.headers["Location"] == f"/checkout/result/{ref}"
    assert len({e["idempotency_key"] for e in simulator.operations("CreateCharge")}) == 2


CAPTURE_FORM = re.compile(
    r'data-testid="capture-form">.*?name="csrf_token" value="([^"]+)"'
    r'.*?name="request_id" value="([^"]+)"',
    re.S,
)


@pytest.mark.parametrize(
    ("intent", "at_amazon", "state"),
    [
        ("Authorize", "Authorized", OrderState.AUTHORIZED),
        ("AuthorizeWithCapture", "Captured", OrderState.PAID),
    ],
)
def test_the_payment_intent_decides_whether_the_saved_wallet_charge_is_captured(
    app_factory: AppFactory,
    simulator: SimulatorHarness,
    intent: str,
    at_amazon: str,
    state: OrderState,
) -> None:
    app = app_factory(ADMIN_PASSWORD=PASSWORD, AMAZON_PAY_PAYMENT_INTENT=intent)
    person = Buyer(app.test_client(), simulator)
    permission_id = save_wallet(person)
    person.add_to_cart("mug")
    csrf, ref, _, _ = pay_form(person)

    answer = submit(person, csrf, ref, permission_id)

    assert answer.headers["Location"] == f"/checkout/result/{ref}"
    assert 'data-testid="success"' in person.follow(answer).get_data(as_text=True)
    store = app.extensions["shop"].store
    order = store.orders.get(ref)
    assert order is not None
    assert order.source == OrderSource.SAVED_WALLET
    charge = app.extensions["shop"].client.get_charge(order.charge_id)
    assert (charge.raw["chargeInitiator"], charge.state_raw) == ("CITU", at_amazon)
    assert charge.charge_amount is not None
    assert charge.charge_amount.amount == order.amount  # the cart's, captured or not
    assert order.status == state
    if intent == "AuthorizeWithCapture":
        assert order.captured_amount == order.amount
        assert order.authorization_expires_at is None
        return
    assert order.captured_amount == Decimal(0)
    assert order.refundable == 0
    assert order.authorization_expires_at is not None
    assert order.authorization_expires_at == charge.expiration_timestamp
    # Staff capture it from the console: Amazon captures the whole amount, the order is paid.
    staff = app.test_client()
    assert sign_in(staff).status_code == 303
    page = staff.get(f"/admin/orders/{ref}").get_data(as_text=True)
    found = CAPTURE_FORM.search(page)
    assert found is not None, "no capture form for an authorized saved-wallet order"
    captured = staff.post(
        f"/admin/orders/{ref}/capture",
        data={"csrf_token": found.group(1), "request_id": found.group(2)},
    )
    assert captured.status_code == 303
    [capture] = simulator.operations("CaptureCharge")
    assert capture["status"] == 200
    assert app.extensions["shop"].client.get_charge(order.charge_id).state_raw == "Captured"
    paid = store.orders.get(ref)
    assert paid is not None
    assert (paid.status, paid.captured_amount) == (OrderState.PAID, paid.amount)
