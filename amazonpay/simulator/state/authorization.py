"""How a Create Charge on a Charge Permission authorizes (docs/amazon-pay-api.md sections 5.3,
6 and 11): a sandbox simulation string, else the saved wallet's monthly limit, else an outcome
scripted through the control API, else the behaviour of the buyer's sandbox card."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from amazonpay.simulator.state.core import SimulatorError
from amazonpay.simulator.state.permissions import PermissionRecord, ScriptedCharge

# Section 5.3: the declines of Create Charge and the HTTP status each is answered with when
# the authorization fails at once (ProcessingFailure is Amazon's 500 of charge operations).
DECLINES: dict[str, int] = {
    "HardDeclined": 400,
    "SoftDeclined": 400,
    "ProcessingFailure": 500,
    "TransactionCountExceeded": 400,
    "PeriodicAmountExceeded": 400,
    "MFANotCompleted": 400,
    "PaymentMethodNotAllowed": 400,
    "TransactionTimedOut": 400,
    "AmazonRejected": 400,
}
# What a pending authorization can settle to (the rest are refused before any authorization).
SETTLEMENTS = (
    "Authorized",
    "SoftDeclined",
    "HardDeclined",
    "AmazonRejected",
    "ProcessingFailure",
    "TransactionTimedOut",
)
# Section 11: how each sandbox card authorizes; the others authorize at once.
_CARDS = {"0701": (True, "Authorized"), "4354": (True, "HardDeclined")}
# Saved wallets have monthly limits whose amounts Amazon does not publish (section 6):
# our choice, per currency; a permission can get its own through the control API.
DEFAULT_MONTHLY_LIMITS: dict[str, Decimal] = {
    "USD": Decimal(2000),
    "EUR": Decimal(2000),
    "GBP": Decimal(2000),
    "JPY": Decimal(300000),
}
_MAX_SCRIPTED = 100


@dataclass(frozen=True)
class Authorization:
    """How one Create Charge goes: now or pending, to Authorized or a decline reason."""

    pending: bool
    outcome: str
    capture_later: bool = False  # captureNow answered CaptureInitiated, Captured later


def scripted_charges(outcome: str, count: int, pending: bool) -> list[ScriptedCharge]:
    """The control API's script of the next Create Charge outcomes; ValueError says why not."""
    allowed = ("Authorized", *DECLINES)
    if outcome not in allowed:
        raise ValueError(f"outcome must be one of {', '.join(allowed)}")
    if pending and outcome not in SETTLEMENTS:
        raise ValueError(f"a pending authorization settles to one of {', '.join(SETTLEMENTS)}")
    if not 1 <= count <= _MAX_SCRIPTED:
        raise ValueError(f"count must be 1 to {_MAX_SCRIPTED}")
    return [ScriptedCharge(outcome, pending)] * count


def monthly_limit(permission: PermissionRecord, currency: str) -> Decimal | None:
    """The monthly amount a saved wallet may be charged in `currency`, None for no limit."""
    if permission.body["chargePermissionType"] != "PaymentMethodOnFile":
        return None
    if permission.monthly_limit is not None:
        amount, limit_currency = permission.monthly_limit
        return amount if limit_currency == currency else None
    return DEFAULT_MONTHLY_LIMITS.get(currency)


def decide(
    permission: PermissionRecord,
    *,
    simulation: str | None,
    can_wait: bool,
    capture_now: bool,
    amount: Decimal,
    currency: str,
    spent_this_month: Decimal,
) -> Authorization:
    """The authorization of one Create Charge; consumes a scripted outcome when it uses one."""
    if simulation == "AuthorizationInitiated":
        if not can_wait:
            raise SimulatorError(
                400,
                "InvalidSandboxSimulationSpecified",
                "AuthorizationInitiated needs canHandlePendingAuthorization true",
            )
        return Authorization(True, "Authorized")
    if simulation == "CaptureInitiated":
        if not capture_now:
            raise SimulatorError(
                400, "InvalidSandboxSimulationSpecified", "CaptureInitiated needs captureNow true"
            )
        return Authorization(False, "Authorized", capture_later=True)
    if simulation is not None:
        # Section 11: a simulation string overrides everything about the buyer's wallet.
        return Authorization(False, simulation)
    limit = monthly_limit(permission, currency)
    if limit is not None and spent_this_month + amount > limit:
        return Authorization(False, "PeriodicAmountExceeded")
    if permission.next_charges:
        scripted = permission.next_charges.pop(0)
        return Authorization(scripted.pending, scripted.outcome)
    pending, outcome = _CARDS.get(permission.card, (False, "Authorized"))
    return Authorization(pending, outcome)


def decline_error(reason: str) -> SimulatorError:
    """The error answer of a Create Charge declined at once (section 5.3); no Charge is made."""
    return SimulatorError(
        DECLINES[reason], reason, f"The Charge was declined ({reason}); no Charge was created"
    )
