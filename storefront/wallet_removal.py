"""Removing a saved wallet: Close Charge Permission once, only the owner's (docs/contract.md
"Using a saved wallet"; docs/amazon-pay-api.md 5.1 and 6).

No Flask here. `WalletRemoval.remove(buyer_id, charge_permission_ids)` validates the id, refuses
another buyer's wallet before any Amazon call, and closes it through the operations ledger
(`close:<charge_permission_id>`), so two clicks or two tabs send one Close. Removing a wallet
already closed succeeds without a call. An unknown answer is pending, replayed by `reconcile`
(Close is a DELETE, idempotent at Amazon).
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.errors import (
    APIConnectionError,
    APIError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServiceError,
)
from amazonpay.models import ChargePermission, ChargePermissionState
from storefront.db import Claim, Store
from storefront.operations import Intent, Operations, TurnKind
from storefront.states import ClaimState, OperationKind, WalletState
from storefront.wallet_state import CHARGE_PERMISSION_PATTERN

__all__ = ["CLOSURE_REASON", "RemovalKind", "RemovalOutcome", "WalletRemoval", "close_key"]

logger = logging.getLogger(__name__)

# Amazon shows the closure reason as the Closed permission's reasonDescription (section 6).
CLOSURE_REASON = "The buyer removed Amazon Pay from their payment methods"


class RemovalKind(enum.Enum):
    REMOVED = "removed"
    REFUSED = "refused"  # malformed, unknown or another buyer's: nothing was sent
    PENDING = "pending"  # Amazon's answer is not known yet; reconciliation finishes it


@dataclass(frozen=True)
class RemovalOutcome:
    kind: RemovalKind
    charge_permission_id: str | None
    reason: str  # for logs and tests


def close_key(charge_permission_id: str) -> str:
    return f"close:{charge_permission_id}"


class WalletRemoval:
    """Closes saved wallets at Amazon. One per app; thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        operations: Operations,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.store = store
        self.operations = operations
        self.clock = clock

    def remove(self, buyer_id: str, charge_permission_ids: Sequence[str]) -> RemovalOutcome:
        values = list(charge_permission_ids)
        if len(values) != 1 or not CHARGE_PERMISSION_PATTERN.match(values[0]):
            return RemovalOutcome(RemovalKind.REFUSED, None, "malformed")
        permission_id = values[0]
        wallet = self.store.wallets.get(permission_id)
        if wallet is None or not secrets.compare_digest(wallet.buyer_id, buyer_id):
            logger.warning("wallet removal refused: not this buyer's charge permission")
            return RemovalOutcome(RemovalKind.REFUSED, None, "foreign-charge-permission")
        if wallet.state == WalletState.CLOSED:
            return RemovalOutcome(RemovalKind.REMOVED, permission_id, "already-closed")
        return self.close(permission_id)

    def close(self, charge_permission_id: str) -> RemovalOutcome:
        """Close this charge permission once (ownership is the caller's check)."""
        key = close_key(charge_permission_id)
        intent = Intent(
            key=key,
            kind=OperationKind.CLOSE_CHARGE_PERMISSION,
            reference=charge_permission_id,
            idempotency_key=idempotency_key_for(key),
            request={"closureReason": CLOSURE_REASON, "cancelPendingCharges": False},
            charge_permission_id=charge_permission_id,
        )
        with self.operations.turn(intent) as turn:
            if turn.kind is TurnKind.HELD:
                assert turn.owner is not None
                return self._held(charge_permission_id, key, turn.owner, turn.stored_request())
            if turn.kind is TurnKind.DECIDED:
                assert turn.claim is not None
                return self._from_claim(turn.claim)
            if turn.kind is TurnKind.BUSY:
                return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "busy")
            return RemovalOutcome(RemovalKind.REFUSED, None, "foreign-operation")

    def reconcile(self, *, limit: int = 20) -> list[RemovalOutcome]:
        """Replay the closes whose answer was lost (cron)."""
        claims = self.store.ledger.undecided(
            self.clock(), limit=limit, kinds=[OperationKind.CLOSE_CHARGE_PERMISSION]
        )
        return [self.close(claim.reference) for claim in claims]

    def _held(
        self, charge_permission_id: str, key: str, owner: str, stored: dict[str, object]
    ) -> RemovalOutcome:
        reason = str(stored.get("closureReason") or CLOSURE_REASON)
        try:
            permission = self.client.close_charge_permission(
                charge_permission_id, reason, cancel_pending_charges=False
            )
        except NotFoundError:
            # Amazon does not know it (any more): nothing can be charged to it.
            return self._closed(charge_permission_id, key, None, "not-found")
        except ConflictError:
            # Not closable as it is: read it; one already Closed is removed all the same.
            return self._after_conflict(charge_permission_id, key, owner)
        except (APIConnectionError, ServiceError, RateLimitError) as exc:
            logger.warning("close charge permission: answer unknown (%s)", type(exc).__name__)
            self.store.ledger.mark_pending(key, reason="close-unknown", now=self.clock())
            return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "close-unknown")
        except APIError as exc:
            logger.warning(
                "close charge permission refused: status=%s reason_code=%s request_id=%s",
                exc.status,
                exc.reason_code,
                exc.request_id,
            )
            # Nothing changed at Amazon: forget the claim so the buyer can simply try again.
            self.store.ledger.release(key, owner)
            return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "refused")
        if permission.state is not ChargePermissionState.CLOSED:
            self.store.ledger.mark_pending(key, reason="close-not-closed", now=self.clock())
            return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "not-closed")
        return self._closed(charge_permission_id, key, permission, "closed")

    def _after_conflict(self, charge_permission_id: str, key: str, owner: str) -> RemovalOutcome:
        try:
            permission = self.client.get_charge_permission(charge_permission_id)
        except APIError:
            self.store.ledger.release(key, owner)
            return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "conflict")
        if permission.state is ChargePermissionState.CLOSED:
            return self._closed(charge_permission_id, key, permission, "already-closed")
        self.store.ledger.release(key, owner)
        return RemovalOutcome(RemovalKind.PENDING, charge_permission_id, "conflict")

    def _closed(
        self,
        charge_permission_id: str,
        key: str,
        permission: ChargePermission | None,
        reason: str,
    ) -> RemovalOutcome:
        now = self.clock()
        reason_code = "ResourceNotFound"
        if permission is not None:
            # A Closed permission names its one reason in `statusDetails.reasons` (section 6):
            # ours (MerchantClosed), or the buyer's or Amazon's when they closed it first.
            given = permission.reasons[0].reason_code if permission.reasons else None
            reason_code = given or permission.reason_code or "MerchantClosed"

        def effect(conn: Connection) -> None:
            self.store.wallets.record_state(
                conn,
                charge_permission_id,
                state=WalletState.CLOSED,
                checked_at=now,
                reason_code=reason_code,
            )

        self.store.ledger.decide(
            key,
            status=ClaimState.COMPLETED,
            reason=reason,
            now=now,
            charge_permission_id=charge_permission_id,
            effect=effect,
        )
        logger.info("saved wallet removed (%s)", reason)
        return RemovalOutcome(RemovalKind.REMOVED, charge_permission_id, reason)

    @staticmethod
    def _from_claim(claim: Claim) -> RemovalOutcome:
        if claim.status == ClaimState.COMPLETED:
            return RemovalOutcome(RemovalKind.REMOVED, claim.reference, "already-decided")
        return RemovalOutcome(RemovalKind.PENDING, claim.reference, claim.reason or "pending")
