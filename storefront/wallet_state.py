"""Keeping each saved wallet's state fresh: from Get Charge Permission when it is stale (bounded
per page), from IPNs, and from every Create Charge outcome (docs/amazon-pay-api.md 6 and 10).

No Flask here. `WalletStates.for_page` is what `/wallet` and `/checkout` call; the charge and
IPN use cases call `refresh` and `record`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from amazonpay.client import AmazonPayClient
from amazonpay.errors import AmazonPayError, NotFoundError
from amazonpay.models import ChargePermission, ChargePermissionState
from storefront.db import SavedPaymentMethod, Store
from storefront.states import WalletState

__all__ = [
    "CHARGE_PERMISSION_PATTERN",
    "FRESH_FOR",
    "MAX_REFRESHES_PER_PAGE",
    "WalletStates",
    "update_page_base",
    "update_page_url",
    "wallet_state_of",
]

logger = logging.getLogger(__name__)

# `S01-1234567-1234567` (sandbox), `P01-…` (live), `B01-…`: three dash-separated groups.
CHARGE_PERMISSION_PATTERN = re.compile(r"\A[A-Z][0-9]{2}-[0-9]{7}-[0-9]{7}\Z")

# How long a state Amazon told us (an IPN, a Get, a charge) counts as fresh: a happy charge
# within it costs one round trip (Create Charge), after it two (Get Charge Permission first).
# Five minutes covers a buyer going from /checkout (which refreshes a stale wallet) to "Pay
# with"; Amazon also sends a CHARGE_PERMISSION IPN for every change (section 10), so the window
# only bounds how long a lost IPN can fool us. Being fooled is cheap: Create Charge itself
# refuses a permission that is not Chargeable (InvalidChargePermissionStatus), moving no money.
FRESH_FOR = timedelta(minutes=5)
# A page never waits on more Amazon calls than this to freshen the wallets it shows (the
# newest first); the others show their last known state and are refreshed by a later page.
MAX_REFRESHES_PER_PAGE = 2

# Amazon's "update your payment method" page (docs section 6).
AMAZON_UPDATE_BASE = "https://payments.amazon.com"
_AMAZON_SCRIPT_HOST = ".payments-amazon.com"


def update_page_base(checkout_js_url: str) -> str:
    """Where the buyer fixes a payment method: Amazon's site, or the simulator's stand-in.

    Amazon's checkout.js comes from `*.payments-amazon.com`; any other checkout.js is the
    simulator's (offline mode or tests), which serves `/jr/your-account/ba/<id>` from the folder
    the script is in (amazonpay/simulator/README.md, "The buyer's side").
    """
    parts = urlsplit(checkout_js_url)
    if parts.scheme == "https" and (parts.hostname or "").endswith(_AMAZON_SCRIPT_HOST):
        return AMAZON_UPDATE_BASE
    folder = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{folder}"


def update_page_url(base: str, charge_permission_id: str) -> str:
    return f"{base}/jr/your-account/ba/{charge_permission_id}"


def wallet_state_of(state: ChargePermissionState) -> WalletState | None:
    """Our state for Amazon's; None for a state we do not know (keep what we had)."""
    return {
        ChargePermissionState.CHARGEABLE: WalletState.CHARGEABLE,
        ChargePermissionState.NON_CHARGEABLE: WalletState.NON_CHARGEABLE,
        ChargePermissionState.CLOSED: WalletState.CLOSED,
    }.get(state)


def _reason(permission: ChargePermission) -> str | None:
    """The first reason Amazon gives (a NonChargeable one may list several, oldest first)."""
    if permission.reasons:
        return permission.reasons[0].reason_code
    return permission.reason_code


class WalletStates:
    """Reads and freshens saved wallets' states. One per app; thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        *,
        clock: Callable[[], datetime],
        fresh_for: timedelta = FRESH_FOR,
        max_refreshes: int = MAX_REFRESHES_PER_PAGE,
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.fresh_for = fresh_for
        self.max_refreshes = max_refreshes

    def is_fresh(self, method: SavedPaymentMethod, now: datetime | None = None) -> bool:
        """Whether Amazon confirmed this state recently enough to charge without a Get first.

        A Closed wallet is final, so always fresh; one that needs the buyer at Amazon never is:
        the buyer is likely fixing it right now, so every page asks again (within its budget).
        """
        if method.state == WalletState.CLOSED:
            return True
        if method.state != WalletState.CHARGEABLE:
            return False
        checked = method.state_checked_at
        return checked is not None and (now or self.clock()) - checked < self.fresh_for

    def for_page(self, buyer_id: str) -> list[SavedPaymentMethod]:
        """The buyer's wallets, newest first, the stale ones refreshed (at most a few calls)."""
        methods = self.store.wallets.for_buyer(buyer_id, newest_first=True)
        now = self.clock()
        budget = self.max_refreshes
        fresh: list[SavedPaymentMethod] = []
        for method in methods:
            # A wallet saved by the return does not know its descriptor yet: read it once.
            unknown = method.payment_descriptor is None and method.state != WalletState.CLOSED
            if budget > 0 and (unknown or not self.is_fresh(method, now)):
                budget -= 1
                fresh.append(self.refresh(method.charge_permission_id) or method)
            else:
                fresh.append(method)
        return fresh

    def refresh(self, charge_permission_id: str) -> SavedPaymentMethod | None:
        """Get Charge Permission and record it. None for a wallet we do not know; on an Amazon
        error the last known state is kept (and logged)."""
        if self.store.wallets.get(charge_permission_id) is None:
            return None
        try:
            permission = self.client.get_charge_permission(charge_permission_id)
        except NotFoundError:
            # Unknown at Amazon (deleted, or another environment): never chargeable again.
            logger.warning("saved wallet not found at Amazon; marking it closed")
            self.store.wallets.update_state(
                charge_permission_id,
                state=WalletState.CLOSED,
                checked_at=self.clock(),
                reason_code="ResourceNotFound",
            )
            return self.store.wallets.get(charge_permission_id)
        except AmazonPayError as exc:
            logger.warning("saved wallet state not refreshed: %s", type(exc).__name__)
            return self.store.wallets.get(charge_permission_id)
        return self._record(permission, then_read=charge_permission_id)

    def record(self, permission: ChargePermission) -> None:
        """Store what a Charge Permission read from Amazon says (state, reason, descriptor)."""
        self._record(permission, then_read=None)

    def _record(
        self, permission: ChargePermission, *, then_read: str | None
    ) -> SavedPaymentMethod | None:
        """`record`, then (in the same transaction) read the wallet `then_read`."""
        state = wallet_state_of(permission.state)
        if state is None:
            logger.warning("charge permission in unknown state %r", permission.state_raw)
            return None if then_read is None else self.store.wallets.get(then_read)
        return self.store.wallets.update_state(
            permission.charge_permission_id,
            then_read=then_read,
            state=state,
            checked_at=self.clock(),
            reason_code=_reason(permission),
            payment_descriptor=permission.payment_descriptor,
            expires_at=permission.expiration_timestamp,
        )
