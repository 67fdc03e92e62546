"""Staff capture and cancel of authorized charges (Authorize intent), and the order's charge
state kept in step with Amazon's.

No Flask here. Rules (docs/contract.md "The merchant console", docs/amazon-pay-api.md 5.1, 7):

* Only an order whose charge is authorized and not captured can be captured or canceled; an
  authorization past its 30 days is shown as expired and refused.
* Each is one ledger operation per form submit (`capture:<request_id>`, `cancel:<request_id>`)
  through `Operations.turn`; Capture carries an idempotency key derived from that key (Cancel
  is a DELETE and has none: canceling a canceled charge answers it unchanged).
* Two different submits racing: the order moves AUTHORIZED -> CAPTURE_PENDING by one
  conditional UPDATE before Capture is called, so only one capture is sent; a cancel racing a
  capture is decided by Amazon (one of them gets InvalidChargeStatus), and the order then
  shows what Get Charge says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.errors import (
    AmazonPayError,
    APIConnectionError,
    APIError,
    InvalidChargeStatus,
    RateLimitError,
    ServiceError,
)
from amazonpay.models import Charge, ChargeState, Price
from storefront.db import Claim, Order, Store
from storefront.db.audit import AuditEntry, StaffAudit
from storefront.operations import Intent, Operations, TurnKind
from storefront.staff import ActionResult, Outcome, money, valid_request_id
from storefront.states import ClaimState, OperationKind, OrderState

__all__ = ["AUTHORIZATION_LIFETIME", "ChargeDesk", "ChargeReport", "order_state_of"]

logger = logging.getLogger(__name__)

# Section 5.1: an authorization Amazon has not seen captured is canceled (ExpiredUnused) after
# 30 days.
AUTHORIZATION_LIFETIME = timedelta(days=30)
_TRANSIENT = (APIConnectionError, ServiceError, RateLimitError)
_CAPTURABLE = frozenset({OrderState.AUTHORIZED})
_CANCELABLE = frozenset({OrderState.AUTHORIZED, OrderState.AUTHORIZATION_PENDING})
_FINAL = frozenset({OrderState.CANCELED, OrderState.EXPIRED, OrderState.DECLINED})
_KINDS = (OperationKind.CAPTURE_CHARGE, OperationKind.CANCEL_CHARGE)
CANCELLATION_REASON = "Canceled by the shop's staff"


def order_state_of(charge: Charge) -> OrderState | None:
    """The order state that mirrors this charge (None: a state we do not know, left alone)."""
    state = charge.state
    if state is ChargeState.AUTHORIZATION_INITIATED:
        return OrderState.AUTHORIZATION_PENDING
    if state is ChargeState.AUTHORIZED:
        return OrderState.AUTHORIZED
    if state is ChargeState.CAPTURE_INITIATED:
        return OrderState.CAPTURE_PENDING
    if state is ChargeState.CAPTURED:
        return OrderState.PAID
    if state is ChargeState.CANCELED:
        expired = charge.reason_code == "ExpiredUnused"
        return OrderState.EXPIRED if expired else OrderState.CANCELED
    if state is ChargeState.DECLINED:
        return OrderState.DECLINED
    return None


@dataclass(frozen=True)
class ChargeReport:
    replayed: int = 0

    def summary(self) -> str:
        return f"captures and cancels: {self.replayed} replayed"


class ChargeDesk:
    """Capture, cancel and refresh of an order's charge; one per app, thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        operations: Operations,
        audit: StaffAudit,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.store = store
        self.operations = operations
        self.audit = audit
        self.clock = clock

    def expired(self, order: Order) -> bool:
        """An authorization whose 30 days are over: it can no longer be captured."""
        if order.status is OrderState.EXPIRED:
            return True
        return (
            order.status in _CANCELABLE
            and order.authorization_expires_at is not None
            and order.authorization_expires_at <= self.clock()
        )

    # -- capture and cancel -----------------------------------------------------------------

    def capture(self, reference: str, request_id: str, *, actor: str) -> ActionResult:
        return self._act(OperationKind.CAPTURE_CHARGE, reference, request_id, actor)

    def cancel(self, reference: str, request_id: str, *, actor: str) -> ActionResult:
        return self._act(OperationKind.CANCEL_CHARGE, reference, request_id, actor)

    def _act(
        self, kind: OperationKind, reference: str, request_id: str, actor: str
    ) -> ActionResult:
        action = "capture" if kind is OperationKind.CAPTURE_CHARGE else "cancel"
        if not valid_request_id(request_id):
            return self._refused(
                action,
                reference,
                None,
                actor,
                reason="bad-request-id",
                message="This form has expired. Please reload the page.",
            )
        order = self.store.orders.get(reference)
        if order is None or order.charge_id is None:
            return self._refused(
                action,
                reference,
                request_id,
                actor,
                reason="no-charge",
                message="This order has no authorized charge.",
            )
        key = f"{action}:{request_id}"
        if self.store.ledger.get(key) is None:
            allowed = _CAPTURABLE if kind is OperationKind.CAPTURE_CHARGE else _CANCELABLE
            if self.expired(order):
                return self._refused(
                    action,
                    reference,
                    request_id,
                    actor,
                    reason="expired",
                    message="The authorization has expired (Amazon Pay keeps one for 30 days);"
                    " it can no longer be captured or canceled.",
                )
            if order.status not in allowed:
                return self._refused(
                    action,
                    reference,
                    request_id,
                    actor,
                    reason=f"state-{order.status.value}",
                    message=f"This order's charge is {_words(order.status)}, so it cannot be"
                    f" {'captured' if action == 'capture' else 'canceled'}.",
                )
        request = (
            {"captureAmount": Price.of(order.amount, order.currency).to_json()}
            if kind is OperationKind.CAPTURE_CHARGE
            else {"cancellationReason": CANCELLATION_REASON}
        )
        intent = Intent(
            key=key,
            kind=kind,
            reference=reference,
            idempotency_key=idempotency_key_for(key),
            request={"chargeId": order.charge_id, **request},
            charge_id=order.charge_id,
        )
        with self.operations.turn(intent) as turn:
            if turn.kind is TurnKind.HELD:
                assert turn.claim is not None
                return self._held(intent, turn.claim, turn.stored_request(), actor)
            if turn.kind is TurnKind.DECIDED and turn.claim is not None:
                self._audit(action, actor, reference, request_id, "repeated")
                return _from_claim(action, turn.claim, reference)
            if turn.kind is TurnKind.FOREIGN:
                return self._refused(
                    action,
                    reference,
                    request_id,
                    actor,
                    reason="foreign-request-id",
                    message="This form was already used for another order.",
                )
            self._audit(action, actor, reference, request_id, "busy")
            return ActionResult(
                Outcome.UNKNOWN,
                f"The {action} is already being made; reload the page in a moment.",
                "busy",
                reference,
            )

    def _held(
        self, intent: Intent, claim: Claim, stored: dict[str, object], actor: str
    ) -> ActionResult:
        request = stored or dict(intent.request)
        charge_id = str(request["chargeId"])
        capture = intent.kind is OperationKind.CAPTURE_CHARGE
        action = "capture" if capture else "cancel"
        request_id = intent.key.split(":", 1)[1]
        now = self.clock()
        # First attempt of a capture: claim the order's authorization for this request, so a
        # second, different submit cannot send a second Capture. A takeover has it already.
        if (
            capture
            and claim.attempts == 1
            and not self.store.orders.move(
                intent.reference, to=OrderState.CAPTURE_PENDING, now=now, only_from=_CAPTURABLE
            )
        ):
            return self._decide_refused(
                intent, actor, "state-changed", "The charge is no longer waiting to be captured."
            )
        try:
            if capture:
                amount = request["captureAmount"]
                assert isinstance(amount, dict)
                charge = self.client.capture_charge(
                    charge_id,
                    Price.of(amount["amount"], amount["currencyCode"]),
                    idempotency_key=intent.idempotency_key,
                )
            else:
                charge = self.client.cancel_charge(charge_id, str(request["cancellationReason"]))
        except _TRANSIENT as exc:
            _log(action, exc)
            self.store.ledger.mark_pending(
                intent.key, reason="no-answer", now=self.clock(), charge_id=charge_id
            )
            self._audit(action, actor, intent.reference, request_id, "unknown:no-answer")
            return ActionResult(
                Outcome.UNKNOWN,
                f"Amazon Pay did not answer yet. The {action} is being confirmed.",
                "no-answer",
                intent.reference,
            )
        except APIError as exc:
            _log(action, exc)
            # The order shows what Amazon says now (e.g. a cancel won the race).
            self.sync(intent.reference, restore=OrderState.AUTHORIZED if capture else None)
            reason = exc.reason_code or f"http-{exc.status}"
            message = (
                f"Amazon Pay refused: the charge is not authorized any more, so it cannot be"
                f" {'captured' if capture else 'canceled'}."
                if isinstance(exc, InvalidChargeStatus)
                else f"Amazon Pay refused the {action}; nothing changed."
            )
            return self._decide_refused(intent, actor, reason, message)
        self._apply(intent.reference, charge)
        outcome = f"{action}:{charge.state_raw}"
        self.store.ledger.decide(
            intent.key,
            status=ClaimState.COMPLETED,
            reason=charge.state_raw or action,
            now=self.clock(),
            charge_id=charge_id,
            effect=lambda conn: self.audit.record(
                self._entry(action, actor, intent.reference, request_id, outcome), conn
            ),
        )
        return _done(action, charge, intent.reference)

    def _decide_refused(
        self, intent: Intent, actor: str, reason: str, message: str
    ) -> ActionResult:
        action = "capture" if intent.kind is OperationKind.CAPTURE_CHARGE else "cancel"
        request_id = intent.key.split(":", 1)[1]
        self.store.ledger.decide(
            intent.key,
            status=ClaimState.FAILED,
            reason=reason[:64],
            now=self.clock(),
            effect=lambda conn: self.audit.record(
                self._entry(action, actor, intent.reference, request_id, f"refused:{reason}"), conn
            ),
        )
        return ActionResult(Outcome.REFUSED, message, reason, intent.reference)

    # -- keeping the order in step with Amazon ---------------------------------------------------

    def sync(self, reference: str, *, restore: OrderState | None = None) -> None:
        """Read the charge (Get Charge) and mirror its state on the order.

        `restore`: where a CAPTURE_PENDING order goes back to when Amazon cannot be asked.
        """
        order = self.store.orders.get(reference)
        if order is None or order.charge_id is None:
            return
        try:
            charge = self.client.get_charge(order.charge_id)
        except AmazonPayError as exc:
            _log("get_charge", exc)
            if restore is not None:
                self.store.orders.move(
                    reference, to=restore, now=self.clock(), only_from={OrderState.CAPTURE_PENDING}
                )
            return
        self._apply(reference, charge)

    def refresh(self, reference: str) -> None:
        """An order page was opened: replay its lost capture/cancel answers, then read the charge
        unless the order is in a final state."""
        now = self.clock()
        for claim in self.store.ledger.for_reference(reference):
            if claim.kind in _KINDS and not claim.decided and not claim.lease_live(now):
                self._replay(claim)
        order = self.store.orders.get(reference)
        if order is not None and order.status not in _FINAL:
            self.sync(reference)

    def reconcile(self, *, limit: int = 50) -> ChargeReport:
        replayed = 0
        for claim in self.store.ledger.undecided(self.clock(), limit=limit, kinds=_KINDS):
            replayed += self._replay(claim)
        return ChargeReport(replayed=replayed)

    def _replay(self, claim: Claim) -> int:
        intent = Intent(
            key=claim.operation_key,
            kind=claim.kind,
            reference=claim.reference,
            idempotency_key=claim.idempotency_key or idempotency_key_for(claim.operation_key),
            charge_id=claim.charge_id,
        )
        with self.operations.turn(intent) as turn:
            if turn.kind is not TurnKind.HELD or turn.claim is None:
                return 0
            result = self._held(intent, turn.claim, turn.stored_request(), "reconcile")
        return int(result.outcome is not Outcome.UNKNOWN)

    def _apply(self, reference: str, charge: Charge) -> None:
        state = order_state_of(charge)
        if state is None:
            logger.warning("charge in unknown state %r ref=%s", charge.state_raw, reference)
            return
        captured = None  # CAPTURE_PENDING: unchanged until Amazon says Captured
        if state is OrderState.PAID and charge.capture_amount is not None:
            captured = charge.capture_amount.amount
        elif state is not OrderState.PAID and state is not OrderState.CAPTURE_PENDING:
            captured = Decimal(0)  # authorized, canceled, expired or declined: nothing taken
        expires = charge.expiration_timestamp
        if expires is None and charge.creation_timestamp is not None:
            expires = charge.creation_timestamp + AUTHORIZATION_LIFETIME
        self.store.orders.move(
            reference,
            to=state,
            now=self.clock(),
            captured_amount=captured,
            authorization_expires_at=expires if state in _CANCELABLE else None,
        )

    # -- audit ------------------------------------------------------------------------------

    def _entry(
        self, action: str, actor: str, reference: str, request_id: str | None, outcome: str
    ) -> AuditEntry:
        return AuditEntry(
            at=self.clock(),
            actor=actor,
            action=action,
            order_reference=reference,
            request_id=request_id,
            outcome=outcome,
        )

    def _audit(
        self, action: str, actor: str, reference: str, request_id: str | None, outcome: str
    ) -> None:
        self.audit.record(self._entry(action, actor, reference, request_id, outcome))

    def _refused(
        self,
        action: str,
        reference: str,
        request_id: str | None,
        actor: str,
        *,
        reason: str,
        message: str,
    ) -> ActionResult:
        if self.store.orders.get(reference) is not None:
            self._audit(action, actor, reference, request_id, f"refused:{reason}")
        return ActionResult(Outcome.REFUSED, message, reason, reference)


def _words(state: OrderState) -> str:
    return {
        OrderState.PAID: "captured already",
        OrderState.AUTHORIZATION_PENDING: "still being authorized",
        OrderState.AUTHORIZED: "authorized",
        OrderState.CAPTURE_PENDING: "being captured",
        OrderState.CANCELED: "canceled",
        OrderState.EXPIRED: "expired",
        OrderState.DECLINED: "declined",
    }[state]


def _done(action: str, charge: Charge, reference: str) -> ActionResult:
    amount = charge.capture_amount or charge.charge_amount
    shown = money(amount.amount, amount.currency_code) if amount else "the charge"
    if action == "cancel":
        return ActionResult(
            Outcome.DONE,
            "The authorization was canceled; nothing was charged.",
            charge.state_raw or "Canceled",
            reference,
        )
    if charge.state is ChargeState.CAPTURE_INITIATED:
        return ActionResult(
            Outcome.STARTED,
            f"Capture of {shown} requested; Amazon Pay is processing it.",
            "CaptureInitiated",
            reference,
        )
    return ActionResult(
        Outcome.DONE, f"Captured {shown}.", charge.state_raw or "Captured", reference
    )


def _from_claim(action: str, claim: Claim, reference: str) -> ActionResult:
    if claim.status is ClaimState.COMPLETED:
        return ActionResult(
            Outcome.DONE,
            f"This {action} was made already; nothing more was done.",
            claim.reason or action,
            reference,
        )
    if claim.status is ClaimState.FAILED:
        return ActionResult(
            Outcome.REFUSED,
            f"This {action} was refused before; nothing changed.",
            claim.reason or "refused",
            reference,
        )
    return ActionResult(Outcome.UNKNOWN, f"The {action} is being confirmed.", "pending", reference)


def _log(operation: str, exc: AmazonPayError) -> None:
    if isinstance(exc, APIError):
        logger.warning(
            "amazon pay %s failed: status=%s reason_code=%s request_id=%s",
            operation,
            exc.status,
            exc.reason_code,
            exc.request_id,
        )
    else:
        logger.warning("amazon pay %s failed: %s", operation, type(exc).__name__)
