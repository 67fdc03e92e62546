"""All of the simulator's objects together: the four state machines wired to one clock and one
IPN event queue. The caller (the Simulator) holds one lock around every call."""

from __future__ import annotations

from amazonpay.simulator.state.charges import Charges
from amazonpay.simulator.state.core import Clock, Core, Event
from amazonpay.simulator.state.permissions import Permissions
from amazonpay.simulator.state.refunds import Refunds
from amazonpay.simulator.state.sessions import Sessions

# Section 11: sandbox simulation strings (header x-amz-pay-simulation-code) per operation.
SIMULATION_CODES: dict[str, tuple[str, ...]] = {
    "CompleteCheckoutSession": (
        "BuyerCanceled",
        "Declined",
        "AmazonCanceled",
        "AuthorizationInitiated",
    ),
    "CreateCharge": (
        "SoftDeclined",
        "HardDeclined",
        "AmazonRejected",
        "TransactionTimedOut",
        "AuthorizationInitiated",
        "CaptureInitiated",
    ),
    "CaptureCharge": ("CaptureInitiated",),
    "CloseChargePermission": ("AmazonClosed",),
}


class Store:
    """Checkout Sessions, Charge Permissions, Charges and Refunds with their transitions.

    Time-driven changes (24 h expiry, pending authorizations, refunds) happen in `tick()`,
    which the caller runs before each request against the injectable clock.
    """

    def __init__(self, *, merchant_id: str, now: Clock) -> None:
        self.merchant_id = merchant_id
        self.core = Core(now)
        # Closing a permission may cancel its charges, which are built after it.
        self.permissions = Permissions(self.core, on_close_cancel=self._cancel_pending_charges)
        self.charges = Charges(self.core, self.permissions)
        self.refunds = Refunds(self.core, self.charges)
        self.sessions = Sessions(self.core, self.permissions, self.charges)

    def _cancel_pending_charges(self, permission_id: str) -> None:
        self.charges.cancel_pending(permission_id)

    def tick(self) -> None:
        """Apply every time-driven transition that is due."""
        self.sessions.tick()
        self.permissions.tick()
        self.charges.tick()
        self.refunds.tick()

    def drain_events(self) -> list[Event]:
        return self.core.drain()
