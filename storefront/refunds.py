"""Staff refunds: full or partial, several per order, never more in total than was captured
(counting refunds still pending), and exactly once per form submit (`request_id`).

No Flask here. Rules (docs/contract.md "The merchant console", docs/amazon-pay-api.md 5.1, 7, 10):

* One ledger operation per request id (`refund:<request_id>`, kind CREATE_REFUND) through
  `Operations.turn`, its idempotency key derived from that key: a double submit, a second
  instance or a takeover after a crash sends the same Create Refund, and Amazon refunds once.
* Before Amazon is called, the refund's row is inserted and its amount reserved on the order by
  one conditional UPDATE in the same transaction; two requests racing for the last remainder
  cannot both pass. A refusal or a Declined refund gives the amount back.
* Amazon answers RefundInitiated; the refund settles to Refunded or Declined later. It is
  followed from IPNs (`settle_objects`), a refresh of the order page (`refresh`) and
  `flask reconcile` (`reconcile`), which also replays Create Refund calls whose answer was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.errors import (
    AmazonPayError,
    APIConnectionError,
    APIError,
    InvalidChargeStatus,
    RateLimitError,
    ServiceError,
    TransactionAmountExceeded,
)
from amazonpay.models import Price
from amazonpay.models import RefundState as AmazonRefundState
from storefront.db import Claim, Store
from storefront.db.audit import AuditEntry, StaffAudit
from storefront.db.refunds import RefundRow, RefundRows
from storefront.operations import Intent, Operations, TurnKind
from storefront.staff import ActionResult, Outcome, money, valid_request_id
from storefront.states import ClaimState, OperationKind, RefundState

__all__ = ["RefundDesk", "SettleReport", "refund_key"]

logger = logging.getLogger(__name__)

_TRANSIENT = (APIConnectionError, ServiceError, RateLimitError)


def refund_key(request_id: str) -> str:
    return f"refund:{request_id}"


@dataclass(frozen=True)
class SettleReport:
    """What one pass of `reconcile` did (one line for the CLI)."""

    replayed: int = 0  # Create Refund calls whose answer was not known, decided now
    settled: int = 0  # refunds that became Refunded or Declined
    still_pending: int = 0

    def summary(self) -> str:
        return (
            f"refunds: {self.replayed} replayed, {self.settled} settled,"
            f" {self.still_pending} still pending"
        )


class RefundDesk:
    """The refund use case; one per app, thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        operations: Operations,
        rows: RefundRows,
        audit: StaffAudit,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.store = store
        self.operations = operations
        self.rows = rows
        self.audit = audit
        self.clock = clock

    # -- asking for a refund ------------------------------------------------------------------

    def refund(
        self, reference: str, amount: Decimal, request_id: str, *, actor: str
    ) -> ActionResult:
        """Refund `amount` of the order's captured money once for this `request_id`."""
        if not valid_request_id(request_id):
            return self._refused(
                reference, None, actor, "bad-request-id", "This form has expired. Please try again."
            )
        key = refund_key(request_id)
        order = self.store.orders.get(reference)
        if order is None:
            return self._refused(
                reference, request_id, actor, "no-order", "There is no such order."
            )
        if self.store.ledger.get(key) is None:
            # A first submit: refuse what cannot succeed before anything is recorded. A repeat
            # goes to its recorded outcome below, whatever the order's totals are now.
            if order.charge_id is None or order.captured_amount <= 0:
                return self._refused(
                    reference,
                    request_id,
                    actor,
                    "not-captured",
                    "Nothing of this order has been captured, so there is nothing to refund.",
                )
            if amount > order.refundable:
                left = money(order.refundable, order.currency)
                return self._refused(
                    reference,
                    request_id,
                    actor,
                    "over-refundable",
                    f"That is more than is left to refund ({left}, counting refunds still"
                    " pending).",
                )
        if order.charge_id is None:
            return self._refused(
                reference, request_id, actor, "no-charge", "This order has no charge to refund."
            )
        intent = Intent(
            key=key,
            kind=OperationKind.CREATE_REFUND,
            reference=reference,
            idempotency_key=idempotency_key_for(key),
            request={
                "chargeId": order.charge_id,
                "refundAmount": Price.of(amount, order.currency).to_json(),
            },
            charge_id=order.charge_id,
        )
        return self._run(intent, request_id, actor)

    def _run(self, intent: Intent, request_id: str, actor: str) -> ActionResult:
        with self.operations.turn(intent) as turn:
            if turn.kind is TurnKind.HELD:
                return self._held(intent, turn.stored_request(), request_id, actor)
            if turn.kind is TurnKind.DECIDED and turn.claim is not None:
                return self._recorded(intent.reference, request_id, turn.claim, actor)
            if turn.kind is TurnKind.FOREIGN:
                return self._refused(
                    intent.reference,
                    request_id,
                    actor,
                    "foreign-request-id",
                    "This form was already used for another order. Please reload the page.",
                )
            self._audit(actor, intent.reference, request_id, "busy")
            return ActionResult(
                Outcome.UNKNOWN,
                "This refund is already being made; reload the page in a moment to see it.",
                "busy",
                intent.reference,
            )

    def _held(
        self, intent: Intent, stored: dict[str, Any], request_id: str, actor: str
    ) -> ActionResult:
        """This caller holds the operation: reserve, call Amazon with the stored request, record."""
        request = stored or dict(intent.request)  # on a takeover the stored request wins
        charge_id = str(request["chargeId"])
        price = Price.of(request["refundAmount"]["amount"], request["refundAmount"]["currencyCode"])
        now = self.clock()
        reservation = self.rows.reserve(
            request_id, intent.reference, price.amount, price.currency_code, now=now
        )
        if not reservation.granted:
            message = "That is more than is left to refund, counting refunds still pending."
            self.store.ledger.decide(
                intent.key,
                status=ClaimState.FAILED,
                reason="over-refundable",
                now=now,
                effect=lambda conn: self.audit.record(
                    self._entry(actor, intent.reference, request_id, "refused:over-refundable"),
                    conn,
                ),
            )
            return ActionResult(Outcome.REFUSED, message, "over-refundable", intent.reference)
        try:
            refund = self.client.create_refund(
                charge_id, price, idempotency_key=intent.idempotency_key
            )
        except _TRANSIENT as exc:
            _log("create_refund", exc)
            self.store.ledger.mark_pending(
                intent.key, reason="no-answer", now=self.clock(), charge_id=charge_id
            )
            self._audit(actor, intent.reference, request_id, "unknown:no-answer")
            return ActionResult(
                Outcome.UNKNOWN,
                "Amazon Pay did not answer yet. The refund is being confirmed; it will show"
                " here as soon as Amazon does.",
                "no-answer",
                intent.reference,
            )
        except APIError as exc:
            _log("create_refund", exc)
            reason = exc.reason_code or f"http-{exc.status}"
            self._fail(intent, request_id, actor, reason, charge_id)
            return ActionResult(Outcome.REFUSED, _refusal(exc), reason, intent.reference)
        state = _refund_state(refund.state)
        now = self.clock()

        def effect(conn: Any) -> None:
            self.rows.accepted(conn, request_id, refund.refund_id, now)
            if state is not RefundState.PENDING:
                self.rows.settle(request_id, state, reason=refund.reason_code, now=now, conn=conn)
            self.audit.record(
                self._entry(actor, intent.reference, request_id, f"requested:{refund.state_raw}"),
                conn,
            )

        self.store.ledger.decide(
            intent.key,
            status=ClaimState.COMPLETED,
            reason=refund.state_raw or "RefundInitiated",
            now=now,
            charge_id=charge_id,
            result_id=refund.refund_id,
            effect=effect,
        )
        return _answer(state, price, intent.reference)

    def _fail(
        self, intent: Intent, request_id: str, actor: str, reason: str, charge_id: str
    ) -> None:
        """Amazon refused the refund: nothing moved, the reserved amount is refundable again."""
        now = self.clock()

        def effect(conn: Any) -> None:
            self.rows.settle(request_id, RefundState.DECLINED, reason=reason, now=now, conn=conn)
            self.audit.record(
                self._entry(actor, intent.reference, request_id, f"refused:{reason}"), conn
            )

        self.store.ledger.decide(
            intent.key,
            status=ClaimState.FAILED,
            reason=reason[:64],
            now=now,
            charge_id=charge_id,
            effect=effect,
        )

    def _recorded(self, reference: str, request_id: str, claim: Claim, actor: str) -> ActionResult:
        """The same request again: answer what happened the first time, move nothing."""
        self._audit(actor, reference, request_id, "repeated")
        row = self.rows.get(request_id)
        if claim.status is ClaimState.FAILED or row is None:
            return ActionResult(
                Outcome.REFUSED,
                "This refund was refused before; nothing was refunded. Reload the page to try"
                " again.",
                claim.reason or "refused",
                reference,
            )
        price = Price.of(row.amount, row.currency)
        return _answer(row.state, price, reference)

    # -- following refunds until Amazon settles them -------------------------------------------

    def refresh(self, reference: str) -> None:
        """An order page was opened: replay its refunds whose answer was lost, settle the rest."""
        now = self.clock()
        for claim in self.store.ledger.for_reference(reference):
            undecided = not claim.decided and not claim.lease_live(now)
            if claim.kind is OperationKind.CREATE_REFUND and undecided:
                self._replay(claim)
        for row in self.rows.for_order(reference):
            if row.state is RefundState.PENDING and row.refund_id:
                self._settle_one(row)

    def settle_objects(self, object_ids: Iterable[str], *, limit: int = 5) -> int:
        """An IPN named these ids (a refund id, or its charge): settle those refunds now."""
        ids = sorted({value for value in object_ids if value})
        if not ids:
            return 0
        settled = 0
        for row in self.rows.unsettled(limit=limit, refund_ids=ids):
            settled += self._settle_one(row)
        for claim in self.store.ledger.undecided(
            self.clock(), limit=limit, charge_ids=ids, kinds=[OperationKind.CREATE_REFUND]
        ):
            self._replay(claim)
        return settled

    def reconcile(self, *, limit: int = 50) -> SettleReport:
        """`flask reconcile`: replay lost Create Refund answers, then settle pending refunds."""
        replayed = 0
        for claim in self.store.ledger.undecided(
            self.clock(), limit=limit, kinds=[OperationKind.CREATE_REFUND]
        ):
            result = self._replay(claim)
            replayed += result is not None and result.outcome is not Outcome.UNKNOWN
        settled = still = 0
        for row in self.rows.unsettled(limit=limit):
            if self._settle_one(row):
                settled += 1
            else:
                still += 1
        return SettleReport(replayed=replayed, settled=settled, still_pending=still)

    def _replay(self, claim: Claim) -> ActionResult | None:
        """Take over an undecided Create Refund and send exactly the stored call again."""
        request_id = claim.operation_key.removeprefix("refund:")
        intent = Intent(
            key=claim.operation_key,
            kind=OperationKind.CREATE_REFUND,
            reference=claim.reference,
            idempotency_key=claim.idempotency_key or idempotency_key_for(claim.operation_key),
            charge_id=claim.charge_id,
        )
        with self.operations.turn(intent) as turn:
            if turn.kind is not TurnKind.HELD:
                return None
            return self._held(intent, turn.stored_request(), request_id, "reconcile")

    def _settle_one(self, row: RefundRow) -> int:
        assert row.refund_id is not None
        try:
            refund = self.client.get_refund(row.refund_id)
        except AmazonPayError as exc:
            _log("get_refund", exc)
            return 0
        state = _refund_state(refund.state)
        if state is RefundState.PENDING:
            return 0
        settled = self.rows.settle(
            row.request_id, state, reason=refund.reason_code, now=self.clock()
        )
        if settled:
            logger.info(
                "refund settled ref=%s request_id=%s state=%s",
                row.order_reference,
                row.request_id,
                state.value,
            )
        return int(settled)

    # -- audit and answers -----------------------------------------------------------------

    def _entry(
        self, actor: str, reference: str | None, request_id: str | None, outcome: str
    ) -> AuditEntry:
        return AuditEntry(
            at=self.clock(),
            actor=actor,
            action="refund",
            order_reference=reference,
            request_id=request_id,
            outcome=outcome,
        )

    def _audit(
        self, actor: str, reference: str | None, request_id: str | None, outcome: str
    ) -> None:
        self.audit.record(self._entry(actor, reference, request_id, outcome))

    def _refused(
        self, reference: str, request_id: str | None, actor: str, reason: str, message: str
    ) -> ActionResult:
        if self.store.orders.get(reference) is not None:
            self._audit(actor, reference, request_id, f"refused:{reason}")
        return ActionResult(Outcome.REFUSED, message, reason, reference)


def _refund_state(state: AmazonRefundState) -> RefundState:
    if state is AmazonRefundState.REFUNDED:
        return RefundState.REFUNDED
    if state is AmazonRefundState.DECLINED:
        return RefundState.DECLINED
    return RefundState.PENDING  # RefundInitiated, or a state we do not know: keep following


def _answer(state: RefundState, price: Price, reference: str) -> ActionResult:
    amount = money(price.amount, price.currency_code)
    if state is RefundState.REFUNDED:
        return ActionResult(Outcome.DONE, f"Refunded {amount}.", "Refunded", reference)
    if state is RefundState.DECLINED:
        return ActionResult(
            Outcome.REFUSED,
            f"Amazon Pay declined the refund of {amount}; nothing was refunded.",
            "Declined",
            reference,
        )
    return ActionResult(
        Outcome.STARTED,
        f"Refund of {amount} requested. Amazon Pay is processing it; it shows as pending until"
        " Amazon confirms it.",
        "RefundInitiated",
        reference,
    )


def _refusal(exc: APIError) -> str:
    """Amazon's refusal in plain words; never its raw text."""
    if isinstance(exc, TransactionAmountExceeded):
        return "Amazon Pay refused: that is more than is left to refund on this charge."
    if isinstance(exc, InvalidChargeStatus):
        return "Amazon Pay refused: the charge is not captured, so it cannot be refunded yet."
    return "Amazon Pay refused the refund; nothing was refunded."


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
