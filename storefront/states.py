"""The shop's states as types: one enum per thing that has a state, defined here only.

Each is stored in the database as its value (a short lowercase string), so rows written by an
earlier release read back as the same members.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CheckoutKind", "ClaimState", "OrderState", "PendingState"]


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
    """An order the shop has taken: paid means Amazon authorized (and captured) its charge."""

    PAID = "paid"
