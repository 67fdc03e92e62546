"""The shop's states as types: one enum per thing that has a state, defined here only.

Each is stored in the database as its value (a short lowercase string), so rows written by an
earlier release read back as the same members.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CheckoutKind",
    "ClaimState",
    "OperationKind",
    "OrderSource",
    "OrderState",
    "PendingState",
    "RefundState",
    "WalletState",
]


class CheckoutKind(StrEnum):
    """What a pending checkout is for: a one-time payment or saving Amazon Pay (Saved Wallet)."""

    ONE_TIME = "one_time"
    WALLET_SETUP = "wallet_setup"


class PendingState(StrEnum):
    """A pending checkout: open (button shown, or a try failed), processing (a checkout session
    is being completed for it), completed (paid or saved; never completed again)."""

    OPEN = "open"
    PROCESSING = "processing"
    COMPLETED = "completed"


class ClaimState(StrEnum):
    """A claim on one Amazon operation: claimed (a worker holds the lease), pending (outcome
    unknown: reconcile it), completed or failed (decided, final)."""

    CLAIMED = "claimed"
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def decided(self) -> bool:
        return self in (ClaimState.COMPLETED, ClaimState.FAILED)


class OrderState(StrEnum):
    """An order the shop has taken, by what its charge is at Amazon (section 5.1)."""

    PAID = "paid"  # authorized and captured: the money moved
    AUTHORIZATION_PENDING = "auth_pending"  # AuthorizationInitiated: settles by IPN, Get Charge
    AUTHORIZED = "authorized"  # authorized, to be captured by staff (Authorize intent)
    CAPTURE_PENDING = "capture_pending"  # CaptureInitiated
    CANCELED = "canceled"  # the authorization was canceled: nothing moved
    EXPIRED = "expired"  # the authorization ran out (30 days) before a capture
    DECLINED = "declined"  # the charge was declined: nothing moved


class OperationKind(StrEnum):
    """Which Amazon Pay call a ledger operation makes (docs/amazon-pay-api.md 5.1)."""

    COMPLETE_CHECKOUT_SESSION = "complete_checkout_session"
    CREATE_CHARGE = "create_charge"
    CAPTURE_CHARGE = "capture_charge"
    CANCEL_CHARGE = "cancel_charge"
    CREATE_REFUND = "create_refund"
    CLOSE_CHARGE_PERMISSION = "close_charge_permission"


class OrderSource(StrEnum):
    """How an order was paid: through Amazon's pages, by the buyer's saved wallet, or by staff."""

    CHECKOUT = "checkout"
    SAVED_WALLET = "saved_wallet"
    MERCHANT = "merchant"


class WalletState(StrEnum):
    """A saved wallet as last seen at Amazon (its charge permission's state, section 6)."""

    CHARGEABLE = "chargeable"
    NON_CHARGEABLE = "non_chargeable"  # the buyer must fix the payment method at Amazon
    CLOSED = "closed"  # never offered again; setting up anew makes a new one


class RefundState(StrEnum):
    """A staff refund: pending until Amazon reports it refunded or declined (section 5.1)."""

    PENDING = "pending"
    REFUNDED = "refunded"
    DECLINED = "declined"
