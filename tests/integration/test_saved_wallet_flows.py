"""Paying with a saved wallet, keeping it healthy and removing it, through the app against the
simulator (docs/contract.md "Using a saved wallet"). Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from storefront.states import OrderSource, OrderState, WalletState
from tests.integration.conftest import PAYMENT_FAILED, Buyer, SimulatorHarness, csrf_token

PAY_FORM = re.compile(
    r'<form method="post" action="/checkout/saved".*?name="ref" value="([^"]+)"'
    r'.*?name="charge_permission_id" value="([^"]+)".*?>(Pay with [^<]*)</button>',
    re.S,
)
REMOVED = "Amazon Pay was removed from your payment methods."


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
