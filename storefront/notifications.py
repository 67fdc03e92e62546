"""Routing a verified Amazon Pay IPN by its object type to the use case that reads that object
from Amazon (docs/amazon-pay-api.md 10: an IPN is a hint; its body decides nothing).

No Flask here. CHARGE_PERMISSION refreshes that saved wallet; CHARGE settles the saved-wallet
charge waiting on it; REFUND (and any other type) goes to the handlers registered for it with
`NotificationRouter.on` - the merchant console registers its refund settlement there. Every
such message also settles the return's claims that know its ids (`ReturnHandler.reconcile_objects`);
a message of any other type without a handler is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from amazonpay.notifications import IpnMessage
from storefront.checkout import ReconcileReport, ReturnHandler
from storefront.saved_wallet import SavedWalletCharges
from storefront.wallet_state import WalletStates

__all__ = [
    "CHARGE",
    "CHARGE_PERMISSION",
    "REFUND",
    "Handler",
    "NotificationRouter",
    "RouteReport",
]

logger = logging.getLogger(__name__)

CHARGE_PERMISSION = "CHARGE_PERMISSION"
CHARGE = "CHARGE"
REFUND = "REFUND"
_KNOWN = frozenset({CHARGE_PERMISSION, CHARGE, REFUND})

# A handler of one object type: given the message, it settles what the message names.
Handler = Callable[[IpnMessage], None]


@dataclass(frozen=True)
class RouteReport:
    """What one message settled (for the log line)."""

    returns: ReconcileReport = field(default_factory=ReconcileReport)
    charges: ReconcileReport = field(default_factory=ReconcileReport)
    wallet_refreshed: bool = False
    handled_by: int = 0  # registered handlers that ran

    def summary(self) -> str:
        parts = []
        if self.returns.results:
            parts.append(f"returns {self.returns.summary()}")
        if self.charges.results:
            parts.append(f"saved-wallet charges {self.charges.summary()}")
        if self.wallet_refreshed:
            parts.append("wallet refreshed")
        if self.handled_by:
            parts.append(f"{self.handled_by} handler(s)")
        return "; ".join(parts) or "nothing to settle"


class NotificationRouter:
    """Sends each IPN to the use cases for its object type. One per app; thread-safe once
    its handlers are registered (register them at start-up)."""

    def __init__(
        self,
        *,
        returns: ReturnHandler,
        charges: SavedWalletCharges,
        wallets: WalletStates,
        limit: int = 5,
    ) -> None:
        self.returns = returns
        self.charges = charges
        self.wallets = wallets
        self.limit = limit  # claims one message may settle inline; the rest is for cron
        self._handlers: dict[str, list[Handler]] = {}

    def on(self, object_type: str, handler: Handler) -> None:
        """Also run `handler` for messages about `object_type` (e.g. REFUND)."""
        self._handlers.setdefault(object_type, []).append(handler)

    def route(self, message: IpnMessage) -> RouteReport:
        ids = [value for value in (message.object_id, message.charge_permission_id) if value]
        object_type = message.object_type or ""
        handlers = self._handlers.get(object_type, [])
        if object_type not in _KNOWN and not handlers:
            # E.g. CHARGEBACK, or a type Amazon adds later: no use case reads such an object,
            # and its ids alone must not make us read others (section 10: a hint, no more).
            logger.info("amazon pay notification ignored: no use case for its object type")
            return RouteReport()
        refreshed = False
        charges = ReconcileReport()
        if object_type == CHARGE_PERMISSION and message.object_id:
            refreshed = self.wallets.refresh(message.object_id) is not None
        if object_type in (CHARGE, CHARGE_PERMISSION):
            charges = self.charges.reconcile_objects(ids, limit=self.limit)
            if object_type == CHARGE and message.charge_permission_id:
                # A charge moved on that wallet: its state may have too (e.g. a hard decline).
                refreshed = self.wallets.refresh(message.charge_permission_id) is not None
        for handler in handlers:
            handler(message)
        returns = self.returns.reconcile_objects(ids, limit=self.limit)
        return RouteReport(returns, charges, refreshed, len(handlers))
