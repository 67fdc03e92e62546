"""AMAZON_PAY_PAYMENT_INTENT=Authorize: a one-time checkout is authorized for staff to capture,
recorded as such (nothing captured, nothing refundable yet); the default captures at once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from storefront.db import Store
from storefront.states import OrderState
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness


@pytest.mark.parametrize(
    ("intent", "state", "captured"),
    [
        ("Authorize", OrderState.AUTHORIZED, Decimal(0)),
        ("AuthorizeWithCapture", OrderState.PAID, None),
    ],
)
def test_the_payment_intent_decides_what_the_order_has_captured(
    app_factory: AppFactory,
    simulator: SimulatorHarness,
    intent: str,
    state: OrderState,
    captured: Decimal | None,
) -> None:
    app = app_factory(AMAZON_PAY_PAYMENT_INTENT=intent)
    person = Buyer(app.test_client(), simulator)
    person.add_to_cart("mug")

    trip = person.pay("/checkout", "1111")

    assert trip.response.status_code == 303
    assert trip.payload["paymentDetails"]["paymentIntent"] == intent
    store: Store = app.extensions["shop"].store
    reference = trip.response.headers["Location"].rsplit("/", 1)[1]
    order = store.orders.get(reference)
    assert order is not None
    assert order.status == state
    assert order.captured_amount == (order.amount if captured is None else captured)
    if intent == "Authorize":
        assert order.authorization_expires_at is not None
        assert order.refundable == 0
