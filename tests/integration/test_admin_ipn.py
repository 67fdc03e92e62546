"""A refund settles from Amazon's REFUND notification alone, without anyone opening the order."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from flask import Flask

from storefront.states import RefundState
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness


def test_a_refund_notification_settles_the_refund(
    app_factory: AppFactory, simulator: SimulatorHarness, live_app: Callable[[Flask], str]
) -> None:
    app = app_factory(
        ADMIN_PASSWORD="correct horse battery staple",
        NOTIFICATION_CERT_URLS=[f"{simulator.base_url}/_simulator/sns-cert.pem"],
    )
    assert simulator.simulator is not None
    simulator.simulator.notify_url = live_app(app) + "/notifications/amazon-pay"
    buyer = Buyer(app.test_client(), simulator)
    buyer.add_to_cart("mug")
    reference = buyer.pay("/checkout").response.headers["Location"].rsplit("/", 1)[-1]
    console = app.extensions["admin"]
    with app.app_context():
        result = console.refunds.refund(reference, Decimal("2.00"), "ipn-request-0001", actor="t")
    assert result.outcome.value == "started"
    refund_id = console.refund_rows.get("ipn-request-0001").refund_id
    settled = simulator.http.post(
        f"{simulator.base_url}/_simulator/refunds/{refund_id}/outcome",
        json={"outcome": "Refunded"},
        timeout=5,
    )
    assert settled.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if console.refund_rows.get("ipn-request-0001").state is RefundState.REFUNDED:
            break
        time.sleep(0.05)
    assert console.refund_rows.get("ipn-request-0001").state is RefundState.REFUNDED
    order = app.extensions["shop"].store.orders.get(reference)
    assert order.refunded_amount == Decimal("2.00")
    assert order.refund_reserved_amount == Decimal(0)
