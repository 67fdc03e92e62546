"""Paying with a saved wallet: Create Charge on a charge permission, exactly once per order
reference (docs/contract.md "Using a saved wallet"; docs/amazon-pay-api.md 5.1, 6 and 7).

No Flask here. The API (also in docs/interfaces.md):

* `SavedWalletCharges.pay(buyer_id, refs, charge_permission_ids)` - the buyer's "Pay with" form
  (`CITU`, `Web`, `captureNow` from AMAZON_PAY_PAYMENT_INTENT via `capture_now`): validates
  both values, checks that the pending checkout and the wallet are this buyer's before anything
  is read from Amazon, charges the pending checkout's own amount.
* `SavedWalletCharges.charge(ChargeOrder)` - the use case itself, for any initiator: the
  merchant console calls it with `ChargeInitiator.MITU`, `source=OrderSource.MERCHANT`,
  `bind_pending=False` and an order reference of its own (one reference = one charge, whoever
  submits it how often). Ownership is the caller's job there (staff only).
* `settle(reference)` - the refresh of a "being confirmed" page; `reconcile(limit)` - cron;
  `reconcile_objects(ids)` - an IPN naming a charge or charge permission.

Each returns a `ChargeOutcome` (success / failure / pending, and whether the buyer must fix the
payment method at Amazon or save Amazon Pay again). Rules:

* One reference, one charge: attempt `n` is the ledger operation `charge:<ref>:<n>` with the
  idempotency key derived from it, so a double click, a second tab, a refresh, a takeover after
  a crash or reconciliation all send the same Create Charge, and Amazon replays its answer. A
  pending checkout is bound to the operation when it is claimed (`bind_pending`), so the same
  cart is never also completed through the Amazon Pay button, nor charged after it was.
* SoftDeclined / ProcessingFailure moved no money: confirm the permission is Chargeable (Get
  Charge Permission) and charge once more under the next key; a second decline is a failure.
  HardDeclined, NonChargeable (and the other `buyer_must_act` declines): failure plus the link
  to fix it at Amazon. Closed: the wallet is marked closed and no longer offered.
* No answer, 5xx or 429 after the client's retries: pending, replayed with the same key by the
  next refresh, `flask reconcile` or an IPN. AuthorizationInitiated: pending, settled by Get
  Charge.
* A wallet whose state Amazon confirmed within `FRESH_FOR` is charged straight away (one round
  trip); an older state is checked first with Get Charge Permission (two).
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.errors import (
    AmazonPayError,
    APIConnectionError,
    APIError,
    DeclineCode,
    DeclinedError,
    DuplicateIdempotencyKey,
    InvalidChargePermissionStatus,
    RateLimitError,
    ServiceError,
)
from amazonpay.models import Channel, Charge, ChargeInitiator, ChargeState, Price
from storefront.checkout import (
    MAX_PENDING_AGE,
    REFERENCE_PATTERN,
    OutcomeKind,
    Reconciled,
    ReconcileReport,
)
from storefront.db import Claim, SavedPaymentMethod, Store
from storefront.operations import Intent, Operations, Turn, TurnKind
from storefront.states import (
    CheckoutKind,
    ClaimState,
    OperationKind,
    OrderSource,
    OrderState,
    PendingState,
    WalletState,
)
from storefront.wallet_state import CHARGE_PERMISSION_PATTERN, WalletStates

__all__ = [
    "ChargeOrder",
    "ChargeOutcome",
    "Failure",
    "SavedWalletCharges",
    "charge_intent",
    "charge_key",
]

logger = logging.getLogger(__name__)

_KEY = re.compile(r"\Acharge:(?P<ref>[A-Za-z0-9_-]{1,40}):(?P<n>[0-9]{1,4})\Z")
_CHARGED = frozenset({ChargeState.AUTHORIZED, ChargeState.CAPTURE_INITIATED, ChargeState.CAPTURED})
_KINDS = (OperationKind.CREATE_CHARGE,)


class Failure(enum.StrEnum):
    """Why a charge was not made, besides Amazon's decline codes (stored as the claim's reason)."""

    MALFORMED = "malformed"
    FOREIGN_REFERENCE = "foreign-reference"
    FOREIGN_WALLET = "foreign-charge-permission"
    NOT_PAYABLE = "not-payable"  # a wallet setup, or a checkout without an amount
    EXPIRED = "expired"
    CLOSED = "Closed"
    NON_CHARGEABLE = "NonChargeable"
    CANCELED = "Canceled"
    REFUSED = "refused"  # Amazon refused the request itself (4xx): nothing moved


@dataclass(frozen=True)
class ChargeOrder:
    """What to charge: `reference` is the exactly-once unit (one order, one charge)."""

    reference: str
    buyer_id: str
    charge_permission_id: str
    amount: Price
    initiator: ChargeInitiator
    items: list[dict[str, Any]] = field(default_factory=list)
    channel: Channel = Channel.WEB
    capture_now: bool = True
    source: OrderSource = OrderSource.SAVED_WALLET
    # The reference is a pending checkout (the buyer's cart): bind it to the charge, complete
    # it with the order. False for an order without one (a merchant-initiated charge).
    bind_pending: bool = True


@dataclass(frozen=True)
class ChargeOutcome:
    """What the buyer (or staff) should see. `reason` is for logs and tests only."""

    kind: OutcomeKind
    reference: str | None
    reason: str
    charge_permission_id: str | None = None
    charge_id: str | None = None
    buyer_must_act: bool = False  # show the link to fix the payment method at Amazon
    wallet_closed: bool = False  # invite the buyer to save Amazon Pay again


def _retry_may_help(claim: Claim) -> bool:
    """Whether a decided attempt failed with a decline that a new attempt may overcome."""
    if claim.status != ClaimState.FAILED or claim.reason is None:
        return False
    try:
        return DeclineCode(claim.reason).retry_may_help
    except ValueError:
        return False


def charge_key(reference: str, attempt: int) -> str:
    """The ledger key of one Create Charge attempt for an order."""
    return f"charge:{reference}:{attempt}"


def charge_intent(order: ChargeOrder, attempt: int) -> Intent:
    """The ledger operation of one Create Charge attempt: key, idempotency key, stored request."""
    key = charge_key(order.reference, attempt)
    return Intent(
        key=key,
        kind=OperationKind.CREATE_CHARGE,
        reference=order.reference,
        idempotency_key=idempotency_key_for(key),
        request=_request(order),
        charge_permission_id=order.charge_permission_id,
        bind_pending=order.bind_pending,
    )


def _attempt_of(claim: Claim) -> int:
    match = _KEY.match(claim.operation_key)
    return int(match["n"]) if match else 0


def _charges(claims: Iterable[Claim]) -> dict[int, Claim]:
    """An order's saved-wallet charge attempts by number."""
    return {
        _attempt_of(claim): claim
        for claim in claims
        if claim.kind == OperationKind.CREATE_CHARGE and _attempt_of(claim)
    }


def _newest(attempts: dict[int, Claim]) -> Claim | None:
    """The latest saved-wallet charge attempt."""
    return attempts[max(attempts)] if attempts else None


def _retry_due(attempts: dict[int, Claim]) -> bool:
    """Whether the latest attempt is the first of a try and failed with a decline a new
    attempt may overcome, so the try's one automatic retry (section 6) comes next.

    Attempt 1 starts a try; an attempt after a retryable decline of a try's first attempt is
    that try's retry, and the attempt after a retry starts a new try (the buyer's, after
    seeing the failure). A second submit arriving just after the first click's first attempt
    was declined thus makes or follows that same retry, never a try of its own.
    """
    if not attempts:
        return False
    latest = max(attempts)
    is_retry = False  # whether attempt n is a try's automatic retry
    for n in range(2, latest + 1):
        before = attempts.get(n - 1)
        is_retry = not is_retry and before is not None and _retry_may_help(before)
    return not is_retry and _retry_may_help(attempts[latest])


def _single(values: Sequence[str], pattern: re.Pattern[str]) -> str | None:
    if len(values) != 1:
        return None
    return values[0] if pattern.match(values[0]) else None


def _flags(reason: str) -> tuple[bool, bool]:
    """(buyer must act at Amazon, wallet closed) for a recorded failure reason."""
    code = DeclineCode.parse(reason)
    if code is not None:
        return code.buyer_must_act, False
    return reason == Failure.NON_CHARGEABLE, reason == Failure.CLOSED


def _request(order: ChargeOrder) -> dict[str, Any]:
    """The stored request: Create Charge's body as sent, and the order it makes."""
    body: dict[str, Any] = {
        "chargePermissionId": order.charge_permission_id,
        "chargeAmount": order.amount.to_json(),
        "captureNow": order.capture_now,
        "canHandlePendingAuthorization": True,
        "chargeInitiator": ChargeInitiator(order.initiator).value,
        "channel": Channel(order.channel).value,
        "merchantMetadata": {"merchantReferenceId": order.reference},
    }
    return {
        "createCharge": body,
        "order": {
            "buyerId": order.buyer_id,
            "items": order.items,
            "source": order.source.value,
            "bindPending": order.bind_pending,
        },
    }


def _order_from(reference: str, stored: dict[str, Any]) -> ChargeOrder:
    """The order a stored request makes: a takeover or reconciliation repeats exactly that."""
    body = stored["createCharge"]
    terms = stored["order"]
    amount = Price.from_json(body["chargeAmount"])
    assert amount is not None
    return ChargeOrder(
        reference=reference,
        buyer_id=terms["buyerId"],
        charge_permission_id=body["chargePermissionId"],
        amount=amount,
        initiator=ChargeInitiator(body["chargeInitiator"]),
        items=list(terms["items"]),
        channel=Channel(body["channel"]),
        capture_now=bool(body["captureNow"]),
        source=OrderSource(terms["source"]),
        bind_pending=bool(terms["bindPending"]),
    )


class SavedWalletCharges:
    """Charges saved wallets once per order reference. One per app; thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        operations: Operations,
        states: WalletStates,
        *,
        clock: Callable[[], datetime],
        max_age: timedelta = MAX_PENDING_AGE,
        capture_now: bool = True,
    ) -> None:
        self.client = client
        self.store = store
        self.operations = operations
        self.states = states
        self.clock = clock
        self.max_age = max_age
        # The buyer's charges follow AMAZON_PAY_PAYMENT_INTENT (docs/contract.md): False leaves
        # each Authorized for staff to capture (docs/amazon-pay-api.md 5.1: within 30 days).
        self.capture_now = capture_now

    # -- the buyer's "Pay with" form ----------------------------------------------------------

    def pay(
        self, buyer_id: str, refs: Sequence[str], charge_permission_ids: Sequence[str]
    ) -> ChargeOutcome:
        """Charge the buyer's cart (pending checkout `ref`) to their saved wallet, once."""
        reference = _single(refs, REFERENCE_PATTERN)
        permission_id = _single(charge_permission_ids, CHARGE_PERMISSION_PATTERN)
        if reference is None or permission_id is None:
            return self._refused(None, Failure.MALFORMED)
        # One connection for the three reads the form needs.
        with self.store.engine.connect() as conn:
            pending = self.store.checkouts.read(conn, reference)
            if pending is None or not secrets.compare_digest(pending.buyer_id, buyer_id):
                return self._refused(None, Failure.FOREIGN_REFERENCE)
            wallet = self.store.wallets.read(conn, permission_id)
            if wallet is None or not secrets.compare_digest(wallet.buyer_id, buyer_id):
                return self._refused(reference, Failure.FOREIGN_WALLET)
            if pending.kind != CheckoutKind.ONE_TIME or pending.amount is None:
                return self._refused(reference, Failure.NOT_PAYABLE)
            attempts = _charges(self.store.ledger.read_for_reference(conn, reference))
        latest = _newest(attempts)
        if latest is None or latest.status == ClaimState.FAILED:
            # A new attempt: never for a cart paid already, or one offered too long ago.
            if pending.state == PendingState.COMPLETED:
                return self._success(reference, "already-completed")
            if self.clock() - pending.created_at > self.max_age:
                return self._refused(reference, Failure.EXPIRED)
        order = ChargeOrder(
            reference=reference,
            buyer_id=buyer_id,
            charge_permission_id=permission_id,
            # The server's record of the cart, never an amount from the form.
            amount=Price.of(pending.amount, pending.currency),
            initiator=ChargeInitiator.CITU,
            items=pending.items,
            capture_now=self.capture_now,
        )
        return self._charge(order, attempts, wallet)

    # -- the use case -------------------------------------------------------------------------

    def charge(self, order: ChargeOrder) -> ChargeOutcome:
        """Charge `order` once: resume its undecided or decided attempt, or make a new one."""
        return self._charge(order, _charges(self.store.ledger.for_reference(order.reference)), None)

    def _charge(
        self, order: ChargeOrder, attempts: dict[int, Claim], known: SavedPaymentMethod | None
    ) -> ChargeOutcome:
        """`charge`, given the order's attempts and its wallet when just read."""
        latest = _newest(attempts)
        if latest is not None and latest.status != ClaimState.FAILED:
            # Charged, or on its way: answer from (or finish) that attempt, whatever the form says.
            stored = Turn(TurnKind.DECIDED, latest).stored_request()
            return self._attempt(
                _order_from(order.reference, stored), _attempt_of(latest), retry=True
            )
        wallet = known
        if wallet is None or wallet.charge_permission_id != order.charge_permission_id:
            wallet = self.store.wallets.get(order.charge_permission_id)
        if wallet is None:
            return self._refused(order.reference, Failure.FOREIGN_WALLET)
        if wallet.state == WalletState.CLOSED:
            return self._refused(order.reference, Failure.CLOSED, order.charge_permission_id)
        attempt = _attempt_of(latest) + 1 if latest is not None else 1
        # The retry due after a soft decline is made (or followed) once, with no retry of its own.
        return self._attempt(order, attempt, retry=not _retry_due(attempts), known=wallet)

    def settle(self, reference: str) -> ChargeOutcome | None:
        """The outcome of this order's saved-wallet charge, settling it if it is undecided.

        None when no saved-wallet charge was made for `reference`.
        """
        latest = self._latest(reference)
        if latest is None:
            return None
        if latest.decided:
            return self._from_claim(latest)
        stored = Turn(TurnKind.DECIDED, latest).stored_request()
        return self._attempt(_order_from(reference, stored), _attempt_of(latest), retry=False)

    def reconcile(self, now: datetime | None = None, *, limit: int = 50) -> ReconcileReport:
        """Settle up to `limit` undecided charges nobody is working on (cron)."""
        moment = now or self.clock()
        return self._settle_all(self.store.ledger.undecided(moment, limit=limit, kinds=_KINDS))

    def reconcile_objects(self, object_ids: Iterable[str], *, limit: int = 5) -> ReconcileReport:
        """Settle the undecided charges on these charges or charge permissions (an IPN)."""
        ids = {value for value in object_ids if value}
        if not ids:
            return ReconcileReport()
        claims = self.store.ledger.undecided(
            self.clock(), limit=limit, charge_ids=ids, kinds=_KINDS
        )
        return self._settle_all(claims)

    def _settle_all(self, claims: Sequence[Claim]) -> ReconcileReport:
        results = []
        for claim in claims:
            outcome = self.settle(claim.reference)
            kind = (
                None if outcome is None or outcome.reason == "claimed-elsewhere" else outcome.kind
            )
            reason = outcome.reason if outcome is not None else "no-charge"
            logger.info("reconciled saved-wallet charge ref=%s reason=%s", claim.reference, reason)
            results.append(Reconciled(claim.operation_key, claim.reference, kind, reason))
        return ReconcileReport(tuple(results))

    # -- one attempt --------------------------------------------------------------------------

    def _attempt(
        self,
        order: ChargeOrder,
        attempt: int,
        *,
        retry: bool,
        known: SavedPaymentMethod | None = None,
    ) -> ChargeOutcome:
        """One attempt under its own key; `known`: the wallet as this request just read it."""
        intent = charge_intent(order, attempt)
        again = False
        with self.operations.turn(intent) as turn:
            if turn.kind is TurnKind.HELD:
                assert turn.claim is not None
                # On a takeover the stored request wins over this caller's.
                held = _order_from(order.reference, turn.stored_request() or _request(order))
                outcome, again = self._held(held, turn.claim, known)
            elif turn.kind is TurnKind.DECIDED:
                assert turn.claim is not None
                outcome = self._from_claim(turn.claim)
                # A double click that waited on a soft-declined first attempt follows the same
                # retry as the click that made it (the same next key, so one Create Charge),
                # instead of answering "not successful" while that retry may move the money.
                again = _retry_may_help(turn.claim)
                if not (again and retry):
                    return outcome
            elif turn.kind is TurnKind.BUSY:
                return self._pending(order.reference, "claimed-elsewhere")
            elif turn.kind is TurnKind.FOREIGN:
                return self._refused(None, Failure.FOREIGN_REFERENCE)
            else:  # the pending checkout is being (or was) completed through a checkout session
                current = self.store.checkouts.get(order.reference)
                if current is not None and current.state == PendingState.COMPLETED:
                    return self._success(order.reference, "already-completed")
                return self._pending(order.reference, "other-in-flight")
        if not (again and retry):
            return outcome
        # Section 6: after SoftDeclined / ProcessingFailure, confirm Chargeable, then charge
        # once more under a new key (the same key would only replay the decline, section 7).
        wallet = self.states.refresh(order.charge_permission_id)
        if wallet is None or wallet.state != WalletState.CHARGEABLE:
            return outcome
        logger.info("saved-wallet charge retried after %s ref=%s", outcome.reason, order.reference)
        return self._attempt(order, attempt + 1, retry=False, known=wallet)

    def _held(
        self, order: ChargeOrder, claim: Claim, known: SavedPaymentMethod | None
    ) -> tuple[ChargeOutcome, bool]:
        """Make (or replay) the call; record its outcome. -> (outcome, whether to retry)."""
        key = claim.operation_key
        if claim.status == ClaimState.PENDING and claim.charge_id:
            return self._check_charge(order, key, claim.charge_id), False
        if claim.status == ClaimState.CLAIMED and claim.attempts == 1:
            # Nothing was sent under this key yet: check a stale state first (section 6).
            wallet = known
            if wallet is None or wallet.charge_permission_id != order.charge_permission_id:
                wallet = self.store.wallets.get(order.charge_permission_id)
            if wallet is not None and not self.states.is_fresh(wallet):
                wallet = self.states.refresh(order.charge_permission_id) or wallet
                if wallet.state == WalletState.CLOSED:
                    return self._fail(order, key, Failure.CLOSED), False
                if wallet.state == WalletState.NON_CHARGEABLE:
                    return self._fail(order, key, Failure.NON_CHARGEABLE), False
        try:
            charge = self.client.create_charge(
                order.charge_permission_id,
                order.amount,
                capture_now=order.capture_now,
                can_handle_pending_authorization=True,
                charge_initiator=order.initiator,
                channel=order.channel,
                merchant_reference_id=order.reference,
                idempotency_key=claim.idempotency_key or idempotency_key_for(key),
            )
        except DeclinedError as exc:
            _log_error(exc)
            if exc.buyer_must_act:
                self._mark_stale(order.charge_permission_id)
            return self._fail(order, key, exc.decline_code.value), exc.retry_may_help
        except InvalidChargePermissionStatus as exc:
            _log_error(exc)
            wallet = self.states.refresh(order.charge_permission_id)
            closed = wallet is not None and wallet.state == WalletState.CLOSED
            return self._fail(
                order, key, Failure.CLOSED if closed else Failure.NON_CHARGEABLE
            ), False
        except DuplicateIdempotencyKey as exc:
            # We always send the stored request, so this is a bug, never a buyer's doing; the
            # first request with this key may have charged: keep it pending, loudly.
            logger.error("saved-wallet charge: idempotency key reused with another request")
            _log_error(exc)
            return self._mark_pending(order, key, "duplicate-idempotency-key"), False
        except (APIConnectionError, ServiceError, RateLimitError) as exc:
            _log_error(exc)
            return self._mark_pending(order, key, "create-charge-unknown"), False
        except APIError as exc:
            _log_error(exc)
            return self._fail(order, key, Failure.REFUSED), False
        return self._charge_result(order, key, charge), False

    def _check_charge(self, order: ChargeOrder, key: str, charge_id: str) -> ChargeOutcome:
        """A pending authorization: Get Charge tells how it ended (section 5.1)."""
        try:
            charge = self.client.get_charge(charge_id)
        except AmazonPayError as exc:
            _log_error(exc)
            return self._mark_pending(order, key, "charge-unavailable", charge_id)
        return self._charge_result(order, key, charge)

    def _charge_result(self, order: ChargeOrder, key: str, charge: Charge) -> ChargeOutcome:
        state = charge.state
        if state in _CHARGED:
            return self._record_success(order, key, charge)
        if state is ChargeState.AUTHORIZATION_INITIATED:
            return self._mark_pending(order, key, "authorization-pending", charge.charge_id)
        if state is ChargeState.DECLINED:
            code = charge.decline_code
            if code is not None and code.buyer_must_act:
                self._mark_stale(order.charge_permission_id)
            reason = code.value if code is not None else "Declined"
            return self._fail(order, key, reason, charge.charge_id)
        if state is ChargeState.CANCELED:
            return self._fail(order, key, Failure.CANCELED, charge.charge_id)
        logger.warning("charge in unexpected state %r", charge.state_raw)
        return self._mark_pending(order, key, "unknown-state", charge.charge_id or None)

    # -- recording ----------------------------------------------------------------------------

    def _record_success(self, order: ChargeOrder, key: str, charge: Charge) -> ChargeOutcome:
        now = self.clock()
        amount = order.amount.amount
        if charge.state is ChargeState.CAPTURED:
            status, captured = OrderState.PAID, amount
            if charge.capture_amount is not None:
                captured = charge.capture_amount.amount
        elif charge.state is ChargeState.CAPTURE_INITIATED:
            status, captured = OrderState.CAPTURE_PENDING, Decimal(0)
        else:
            status, captured = OrderState.AUTHORIZED, Decimal(0)

        def effect(conn: Connection) -> None:
            if order.bind_pending:
                self.store.checkouts.mark_completed(conn, order.reference, key)
            self.store.orders.add(
                conn,
                reference=order.reference,
                buyer_id=order.buyer_id,
                amount=amount,
                currency=order.amount.currency_code,
                items=order.items,
                status=status,
                checkout_session_id=None,
                charge_permission_id=order.charge_permission_id,
                charge_id=charge.charge_id,
                now=now,
                source=order.source,
                captured_amount=captured,
                authorization_expires_at=(
                    charge.expiration_timestamp if status == OrderState.AUTHORIZED else None
                ),
            )
            # A charge just went through: Amazon confirmed the wallet is Chargeable.
            self.store.wallets.record_state(
                conn, order.charge_permission_id, state=WalletState.CHARGEABLE, checked_at=now
            )

        decided = self.store.ledger.decide(
            key,
            status=ClaimState.COMPLETED,
            reason=charge.state.value,
            now=now,
            charge_permission_id=order.charge_permission_id,
            charge_id=charge.charge_id,
            effect=effect,
        )
        if not decided:
            return self._answer_recorded(key, order.reference)
        logger.info("saved-wallet charge %s ref=%s", charge.state.value, order.reference)
        return ChargeOutcome(
            OutcomeKind.SUCCESS,
            order.reference,
            charge.state.value,
            order.charge_permission_id,
            charge.charge_id,
        )

    def _fail(
        self, order: ChargeOrder, key: str, reason: str, charge_id: str | None = None
    ) -> ChargeOutcome:
        """A final failure: nothing moved. The cart's pending checkout opens again."""

        def effect(conn: Connection) -> None:
            if order.bind_pending:
                self.store.checkouts.reopen(conn, order.reference, key, only_processing=False)

        decided = self.store.ledger.decide(
            key,
            status=ClaimState.FAILED,
            reason=reason,
            now=self.clock(),
            charge_permission_id=order.charge_permission_id,
            charge_id=charge_id,
            effect=effect,
        )
        if not decided:
            return self._answer_recorded(key, order.reference)
        logger.info("saved-wallet charge failed ref=%s reason=%s", order.reference, reason)
        return self._refused(order.reference, reason, order.charge_permission_id)

    def _mark_pending(
        self, order: ChargeOrder, key: str, reason: str, charge_id: str | None = None
    ) -> ChargeOutcome:
        self.store.ledger.mark_pending(
            key,
            reason=reason,
            now=self.clock(),
            charge_permission_id=order.charge_permission_id,
            charge_id=charge_id,
        )
        logger.info("saved-wallet charge pending ref=%s reason=%s", order.reference, reason)
        return self._pending(order.reference, reason)

    def _mark_stale(self, charge_permission_id: str) -> None:
        with self.store.engine.begin() as conn:
            self.store.wallets.mark_stale(conn, charge_permission_id)

    # -- answers ------------------------------------------------------------------------------

    def _latest(self, reference: str) -> Claim | None:
        return _newest(_charges(self.store.ledger.for_reference(reference)))

    def _answer_recorded(self, key: str, reference: str) -> ChargeOutcome:
        claim = self.store.ledger.get(key)
        if claim is None:
            return self._pending(reference, "unknown")
        return self._from_claim(claim)

    def _from_claim(self, claim: Claim) -> ChargeOutcome:
        if claim.status == ClaimState.COMPLETED:
            return ChargeOutcome(
                OutcomeKind.SUCCESS,
                claim.reference,
                "already-decided",
                claim.charge_permission_id,
                claim.charge_id,
            )
        if claim.status == ClaimState.FAILED:
            return self._refused(
                claim.reference, claim.reason or "failed", claim.charge_permission_id
            )
        return self._pending(claim.reference, claim.reason or "pending")

    @staticmethod
    def _refused(
        reference: str | None, reason: str, charge_permission_id: str | None = None
    ) -> ChargeOutcome:
        must_act, closed = _flags(reason)
        return ChargeOutcome(
            OutcomeKind.FAILURE,
            reference,
            reason,
            charge_permission_id,
            buyer_must_act=must_act,
            wallet_closed=closed,
        )

    @staticmethod
    def _success(reference: str, reason: str) -> ChargeOutcome:
        return ChargeOutcome(OutcomeKind.SUCCESS, reference, reason)

    @staticmethod
    def _pending(reference: str | None, reason: str) -> ChargeOutcome:
        return ChargeOutcome(OutcomeKind.PENDING, reference, reason)


def _log_error(exc: AmazonPayError) -> None:
    """Status, reasonCode and Amazon's request id; never the message body, keys or payloads."""
    if isinstance(exc, APIError):
        logger.warning(
            "amazon pay create_charge failed: status=%s reason_code=%s request_id=%s",
            exc.status,
            exc.reason_code,
            exc.request_id,
        )
    elif isinstance(exc, APIConnectionError):
        logger.warning(
            "amazon pay create_charge: no response (may have been applied: %s)",
            exc.may_have_been_applied,
        )
    else:
        logger.warning("amazon pay create_charge failed: %s", type(exc).__name__)
