"""Staff capture and cancel against the simulator on SQLite and PostgreSQL, in each charge state:
only an authorized, uncaptured and unexpired charge moves; once per request id."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric import rsa

from storefront.db import Store
from storefront.staff import Outcome
from storefront.states import OrderState
from tests.unit.console_support import Sim, clock, desks, make_client, paid_order, sim

__all__ = ["sim"]  # fixtures


def test_an_authorized_charge_is_captured_once_then_refundable(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00", intent="Authorize")
    done = d.charges.capture(reference, "capture-req-0001", actor="staff")
    again = d.charges.capture(reference, "capture-req-0001", actor="staff")
    other = d.charges.capture(reference, "capture-req-0002", actor="staff")
    assert done.outcome is Outcome.DONE
    assert again.outcome is Outcome.DONE
    assert other.outcome is Outcome.REFUSED  # captured already: a second form moves nothing
    assert len(sim.calls("CaptureCharge")) == 1
    order = store.orders.get(reference)
    assert order is not None
    assert order.status is OrderState.PAID
    assert order.captured_amount == Decimal("20.00")
    assert order.refundable == Decimal("20.00")
    assert d.charges.cancel(reference, "cancel-req-0001", actor="staff").refused
    assert sim.calls("CancelCharge") == []


def test_an_authorized_charge_is_canceled_and_then_neither_captured_nor_refunded(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00", intent="Authorize")
    assert d.charges.cancel(reference, "cancel-req-0001", actor="staff").outcome is Outcome.DONE
    order = store.orders.get(reference)
    assert order is not None
    assert order.status is OrderState.CANCELED
    assert d.charges.capture(reference, "capture-req-0001", actor="staff").refused
    assert sim.calls("CaptureCharge") == []


def test_a_captured_charge_can_be_neither_captured_nor_canceled(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00")
    capture = d.charges.capture(reference, "capture-req-0001", actor="staff")
    cancel = d.charges.cancel(reference, "cancel-req-0001", actor="staff")
    assert capture.refused
    assert "captured already" in capture.message
    assert cancel.refused
    assert sim.calls("CaptureCharge") == []
    assert sim.calls("CancelCharge") == []


def test_an_expired_authorization_is_shown_as_such_and_refused(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00", intent="Authorize")
    store.orders.move(
        reference,
        to=OrderState.AUTHORIZED,
        now=clock(),
        authorization_expires_at=clock() - timedelta(minutes=1),
    )
    order = store.orders.get(reference)
    assert order is not None
    assert d.charges.expired(order)
    refused = d.charges.capture(reference, "capture-req-0001", actor="staff")
    assert refused.refused
    assert "expired" in refused.message
    assert sim.calls("CaptureCharge") == []


def test_a_refresh_mirrors_the_charge_amazon_reports(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00", intent="Authorize")
    # The order row says paid (an older return), Amazon says Authorized: the refresh corrects it.
    store.orders.move(reference, to=OrderState.PAID, now=clock(), captured_amount=Decimal(20))
    d.charges.refresh(reference)
    order = store.orders.get(reference)
    assert order is not None
    assert order.status is OrderState.AUTHORIZED
    assert order.captured_amount == 0
    assert order.authorization_expires_at is not None
