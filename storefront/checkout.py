"""The return-URL use case: verify the buyer's Amazon Pay checkout session and complete it once.

No Flask here: `ReturnHandler.handle_return` takes the raw query values and gives back a
`ReturnOutcome` the view maps to a response. Rules (docs/contract.md, docs/amazon-pay-api.md 5.2,
5.3, 12):

* `amazonCheckoutSessionId` and `ref` must each appear exactly once and match a strict pattern;
  anything else is a failure before any database or Amazon call. Session ids are 9-64 characters
  of letters, digits and inner dashes (a UUID is 36), references are our own 22-character tokens.
* The pending checkout is found by `ref` (so a lost cookie does not matter). Unknown or malformed
  `ref` -> failure, redirected to /wallet (the seed's flow) since the checkout kind is unknown.
* A session id already claimed for another pending checkout is refused without calling Amazon.
* One worker wins the claim row (INSERT ... ON CONFLICT DO NOTHING). The others wait for its
  decision only while the claim is young (a double click: `wait`, about 2 s from the claim); a
  claim held longer (slow Amazon, or a crashed worker) is answered "being confirmed" at once and
  the page's refresh polls, so no request thread sits on someone else's claim. The winner keeps
  its short lease alive while it works (`LeaseKeeper`), so it is never overtaken; a crashed
  winner's lease runs out within `lease` and the next refresh or cron run takes it over. The
  winner reads the session, checks that it belongs to this pending checkout and matches its
  type and amount, then completes it with a key derived from the session id, so a takeover
  after a crash replays rather than repeats.
* An outcome that may hide moved money (no response, 5xx, 429, 202) is *pending*, never failure;
  the next visit reconciles with a GET and, if still Open and under 24 hours old, completes
  again with the same key (an older Open session is a failure: Amazon cancels it).
* `ReturnHandler.reconcile` (cron: `flask reconcile`) and `reconcile_objects` (IPNs) settle the
  claims nobody revisits - pending ones and claimed ones whose lease ran out - by taking the
  claim over and running the same steps as a refresh.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.errors import (
    AmazonPayError,
    APIConnectionError,
    APIError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServiceError,
)
from amazonpay.models import ChargeState, CheckoutSession, Price
from storefront.abuse import Admission, ReturnLimiter
from storefront.db import Claim, PendingCheckout, Store
from storefront.db.leases import LeaseKeeper
from storefront.db.throttles import Throttles
from storefront.states import CheckoutKind, ClaimState, OperationKind, PendingState

__all__ = [
    "REFERENCE_PATTERN",
    "SESSION_ID_PATTERN",
    "OutcomeKind",
    "ReconcileReport",
    "Reconciled",
    "ReturnHandler",
    "ReturnOutcome",
    "valid_reference",
]

logger = logging.getLogger(__name__)

SESSION_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9-]{7,62}[A-Za-z0-9]\Z")
REFERENCE_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")

# The ledger operations this use case settles; the others have their own use cases.
_RETURN_KINDS = (OperationKind.COMPLETE_CHECKOUT_SESSION,)

# Section 4: a session not completed within 24 hours is canceled by Amazon.
MAX_PENDING_AGE = timedelta(hours=24)
# A crashed worker's claim is taken over this long after its last heartbeat; the live holder
# renews it every quarter of it, so a few missed renewals (a database blip) do not lose it.
CLAIM_LEASE = timedelta(seconds=20)
# Reconciliation retries a claim that never sent Complete after 1 minute, then 2, 4, ... up to an
# hour; one that may have sent Complete (money may have moved) is retried on every run.
RETRY_BACKOFF = timedelta(minutes=1)
MAX_RETRY_BACKOFF = timedelta(hours=1)
# Reasons under which a claim from before `before_complete` existed had sent Complete.
_LEGACY_SENT_REASONS = frozenset({"complete-unknown", "authorization-pending"})
_LEGACY_SENT_PREFIXES = ("complete-state-", "recheck-")

_SUCCESS_CHARGE_STATES = frozenset({"Authorized", "CaptureInitiated", "Captured"})
_FAILED_CHARGE_STATES = frozenset({"Declined", "Canceled"})
# Complete answered "not Open any more": read the session to learn what really happened (5.2).
_RECHECK_REASONS = frozenset({"InvalidCheckoutSessionStatus", "CheckoutSessionCanceled"})


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"


@dataclass(frozen=True)
class ReturnOutcome:
    """What the buyer should see. `checkout_kind` picks the failure redirect (wallet/checkout)."""

    kind: OutcomeKind
    checkout_kind: CheckoutKind
    reference: str | None
    reason: str  # for logs and tests; never shown to the buyer


@dataclass(frozen=True)
class Reconciled:
    """One claim a reconciliation pass looked at. `kind` None: skipped, someone else has it."""

    checkout_session_id: str
    reference: str
    kind: OutcomeKind | None
    reason: str  # for logs and tests


@dataclass(frozen=True)
class ReconcileReport:
    """What one reconciliation pass did, claim by claim."""

    results: tuple[Reconciled, ...] = ()

    def count(self, kind: OutcomeKind | None) -> int:
        return sum(1 for result in self.results if result.kind is kind)

    def summary(self) -> str:
        """One line for logs and the CLI, e.g. `reconciled 3: 2 completed, 1 failed, ...`."""
        completed = self.count(OutcomeKind.SUCCESS)
        failed = self.count(OutcomeKind.FAILURE)
        pending = self.count(OutcomeKind.PENDING)
        line = (
            f"reconciled {completed + failed + pending}: {completed} completed,"
            f" {failed} failed, {pending} still pending"
        )
        skipped = self.count(None)
        return f"{line}, {skipped} skipped (held elsewhere)" if skipped else line


def valid_reference(value: str | None) -> bool:
    return value is not None and REFERENCE_PATTERN.match(value) is not None


def _single(values: Sequence[str], pattern: re.Pattern[str]) -> str | None:
    """The one value when exactly one was given and it matches; duplicates count as malformed."""
    if len(values) != 1:
        return None
    value = values[0]
    return value if pattern.match(value) else None


class ReturnHandler:
    """Completes Amazon Pay checkout sessions on the buyer's return. One per app; thread-safe."""

    def __init__(
        self,
        client: AmazonPayClient,
        store: Store,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        lease: timedelta = CLAIM_LEASE,
        wait: timedelta = timedelta(seconds=15),
        poll_interval: float = 0.1,
        max_age: timedelta = MAX_PENDING_AGE,
        heartbeat_seconds: float | None = None,
        limiter: ReturnLimiter | None = None,
    ) -> None:
        """`wait`: how long after a claim was taken others wait for its decision (the app
        configures about 2 s); `heartbeat_seconds`: how often a holder renews its lease
        (a quarter of `lease` unless given); `limiter`: what one client may cost (the
        default limits on the store's `throttles` unless given)."""
        self.client = client
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.lease = lease
        self.wait = wait
        self.poll_interval = poll_interval
        self.max_age = max_age
        self.leases = LeaseKeeper(
            store.ledger, lease=lease, clock=clock, every_seconds=heartbeat_seconds
        )
        self.limiter = limiter or ReturnLimiter(Throttles(store.engine))

    # -- entry point ----------------------------------------------------------------------

    def handle_return(
        self,
        session_ids: Sequence[str],
        refs: Sequence[str],
        *,
        client: str | None = None,
        buyer: str | None = None,
    ) -> ReturnOutcome:
        """Decide the outcome for `/checkout/return?ref=...&amazonCheckoutSessionId=...`.

        `client`: the caller's address, for the per-client limits; `buyer`: the buyer id in
        the caller's cookie, if any (never created here).
        """
        reference = _single(refs, REFERENCE_PATTERN)
        pending = self.store.checkouts.get(reference) if reference else None
        if pending is None:
            reason = "unknown-reference" if reference else "malformed-reference"
            if reference:  # a well-formed guess: counts against the client
                self.limiter.unknown_reference(client, now=self.clock())
            logger.warning("checkout return refused: %s", reason)
            return ReturnOutcome(OutcomeKind.FAILURE, CheckoutKind.WALLET_SETUP, None, reason)

        session_id = _single(session_ids, SESSION_ID_PATTERN)
        if session_id is None:
            logger.warning(
                "checkout return refused: malformed session id ref=%s", pending.reference
            )
            return self._failure(pending, "malformed-session-id")

        expired = self.clock() - pending.created_at > self.max_age
        if pending.state == PendingState.COMPLETED or expired:
            # Only a session without a claim is refused here; one with a claim is decided by it.
            # Otherwise the claim below reads the existing row itself, so the usual return
            # skips this read: an existing claim gives the same answers through the loop.
            existing = self.store.ledger.get(session_id)
            if existing is not None:
                if existing.reference != pending.reference:
                    return self._foreign(pending, session_id)
                if existing.decided:
                    return self._from_claim(pending, existing)
            elif pending.state == PendingState.COMPLETED:
                # Paid already through another session (a second tab): never complete twice;
                # the other session is left Open and Amazon cancels it after 24 hours.
                return self._success(pending, "already-completed")
            else:
                logger.warning("checkout return refused: expired ref=%s", pending.reference)
                return self._failure(pending, "expired")

        admission = self._admit(pending, session_id, client, buyer)
        if admission is not None and not admission.allowed:
            logger.warning(
                "checkout return refused: %s ref=%s", admission.verdict.value, pending.reference
            )
            return self._failure(pending, admission.verdict.value)
        outcome = self._claim_and_process(pending, session_id)
        if (
            admission is not None
            and admission.free
            and outcome.kind is OutcomeKind.FAILURE
            and not self._owner_confirmed(session_id)
        ):
            # Only a session id that was not this buyer's counts against the address: a
            # declined or canceled payment Amazon confirmed as theirs is no abuse, and counting
            # it would lock out every buyer behind the same address (a NAT) after ten.
            self.limiter.strike(client, now=self.clock())
        return outcome

    def _owner_confirmed(self, session_id: str) -> bool:
        claim = self.store.ledger.get(session_id)
        return claim is not None and claim.owner_confirmed

    def _admit(
        self, pending: PendingCheckout, session_id: str, client: str | None, buyer: str | None
    ) -> Admission | None:
        """None when the session id is already claimed for this pending checkout (a refresh,
        never limited); otherwise whether this new one may cost an Amazon call."""
        unconfirmed = 0
        for claim in self.store.ledger.for_reference(pending.reference):
            if claim.kind is not OperationKind.COMPLETE_CHECKOUT_SESSION:
                continue
            if claim.operation_key == session_id:
                return None
            unconfirmed += 0 if claim.owner_confirmed else 1
        owned = buyer is not None and secrets.compare_digest(buyer, pending.buyer_id)
        return self.limiter.new_session(
            client, owned=owned, unconfirmed=unconfirmed, now=self.clock()
        )

    def _claim_and_process(self, pending: PendingCheckout, session_id: str) -> ReturnOutcome:
        owner = secrets.token_hex(8)
        deadline = self.clock() + self.wait
        while True:
            attempt = self.store.ledger.claim(
                session_id,
                pending.reference,
                owner=owner,
                now=self.clock(),
                lease=self.lease,
                start_processing=True,
            )
            claim = attempt.claim
            if attempt.won:
                with self.leases.holding(session_id, owner):
                    return self._process(pending, claim, owner, attempt.processing)
            if claim.reference != pending.reference:
                if claim.decided or claim.owner_confirmed or _may_have_sent_complete(claim):
                    return self._foreign(pending, session_id)
                # Bound to another reference on nobody's word but the caller's: ask Amazon.
                return self._take_from_other(pending, claim)
            if claim.decided:
                return self._from_claim(pending, claim)
            if claim.status == ClaimState.PENDING:
                # Another request is reconciling it right now; its refresh will show the result.
                return self._pending(pending, "reconciling-elsewhere")
            # Wait only on a young claim (its winner is about to decide); one held longer is
            # slow or orphaned, and waiting on it would only tie up this request's thread.
            if self.clock() >= min(deadline, claim.updated_at + self.wait):
                return self._pending(pending, "claimed-elsewhere")
            self.sleep(self.poll_interval)

    def _take_from_other(self, pending: PendingCheckout, claim: Claim) -> ReturnOutcome:
        """The session is claimed for another reference, but Amazon never confirmed that one's
        and it never sent Complete (e.g. its id replayed on an attacker's own `ref` while Get
        failed). Amazon's word decides: when the session names this pending checkout, the
        claim moves here and completes; otherwise the refusal stands."""
        session_id, other = claim.checkout_session_id, claim.reference
        owner = secrets.token_hex(8)
        held = self.store.ledger.take_unconfirmed(
            session_id, other, owner=owner, now=self.clock(), lease=self.lease
        )
        if held is None:  # held by someone right now, or changed meanwhile: the refresh retries
            return self._pending(pending, "claimed-elsewhere")
        with self.leases.holding(session_id, owner):
            try:
                session = self.client.get_checkout_session(session_id)
            except NotFoundError as exc:
                _log_error("get_checkout_session", exc)
                self.store.ledger.record_failure(
                    session_id, other, reason="not-found", now=self.clock()
                )
                return self._failure(pending, "not-found")
            except (APIConnectionError, ServiceError, RateLimitError) as exc:
                _log_error("get_checkout_session", exc)
                self.store.ledger.let_go(session_id, owner, now=self.clock())
                return self._pending(pending, "ownership-unavailable")
            except APIError as exc:
                _log_error("get_checkout_session", exc)
                self.store.ledger.let_go(session_id, owner, now=self.clock())
                return self._foreign(pending, session_id)
            named = _session_reference(session)
            if named is None or not secrets.compare_digest(named, pending.reference):
                if named is not None and secrets.compare_digest(named, other):
                    self.store.ledger.confirm_owner(session_id)
                self.store.ledger.let_go(session_id, owner, now=self.clock())
                return self._foreign(pending, session_id)
            moved = self.store.ledger.transfer(
                session_id,
                from_reference=other,
                to_reference=pending.reference,
                owner=owner,
                now=self.clock(),
            )
            if moved is None:
                return self._pending(pending, "claimed-elsewhere")
            logger.warning(
                "checkout session moved to its owner ref=%s from another checkout",
                pending.reference,
            )
            return self._process(pending, moved, owner, None, session=session)

    # -- reconciliation: claims nobody is refreshing ------------------------------------------

    def reconcile(
        self, now: datetime | None = None, *, limit: int = 50, purge: bool = True
    ) -> ReconcileReport:
        """Settle up to `limit` undecided claims: pending ones, and claimed ones whose lease ran
        out (a worker crashed between Amazon's answer and our write).

        Each goes through the very path a buyer's refresh takes: take the claim over, Get
        Checkout Session, Complete again with the same key while Open and under 24 hours, Get
        Charge after a 202, record the outcome. A claim someone else holds is skipped; the lease
        makes concurrent reconcilers and buyers safe.

        Claims Amazon confirmed (Complete may have moved money) come first, then the others,
        the longest-due first. A claim that never sent Complete is given up (failed, without a
        call) once past Amazon's 24 hours, and otherwise backs off exponentially, so junk can
        never starve real checkouts. With `purge`, pending checkouts nobody paid through within
        24 hours and that no operation names are deleted (anonymous page views), and so are
        the per-address counters idle for as long.
        """
        moment = now or self.clock()
        report = self._settle(
            self.store.ledger.undecided(
                moment, limit=limit, kinds=_RETURN_KINDS, confirmed_first=True
            ),
            moment,
        )
        if purge:
            purged = self.store.checkouts.purge_unused(created_before=moment - self.max_age)
            if purged:
                logger.info("purged %d unused pending checkouts", purged)
            # Every address that ever came leaves a counter; one idle for a day counts nothing.
            forgotten = self.limiter.throttles.purge(
                window_before=moment - self.max_age, now=moment
            )
            if forgotten:
                logger.info("forgot %d idle per-address counters", forgotten)
        return report

    def reconcile_objects(
        self, object_ids: Iterable[str], now: datetime | None = None, *, limit: int = 5
    ) -> ReconcileReport:
        """Settle the undecided claims whose charge permission or charge is one of `object_ids`
        (what an IPN names, section 10). Only claims that already know those ids can match;
        the others are left to `reconcile`."""
        ids = {value for value in object_ids if value}
        if not ids:
            return ReconcileReport()
        moment = now or self.clock()
        claims = self.store.ledger.undecided(
            moment, limit=limit, charge_ids=ids, kinds=_RETURN_KINDS
        )
        return self._settle(claims, moment)

    def _settle(self, claims: Sequence[Claim], now: datetime) -> ReconcileReport:
        return ReconcileReport(tuple(self._settle_one(claim, now) for claim in claims))

    def _settle_one(self, found: Claim, now: datetime) -> Reconciled:
        session_id, reference = found.checkout_session_id, found.reference
        pending = self.store.checkouts.get(reference)
        if pending is None:  # cannot happen through our writes; never guess the terms
            logger.warning("reconcile: claim without its pending checkout ref=%s", reference)
            return Reconciled(session_id, reference, None, "no-pending-checkout")
        owner = secrets.token_hex(8)
        attempt = self.store.ledger.claim(
            session_id, reference, owner=owner, now=now, lease=self.lease
        )
        if not attempt.won:
            # Decided meanwhile, or a buyer's request or another reconciler holds the lease.
            reason = "decided-elsewhere" if attempt.claim.decided else "claimed-elsewhere"
            return Reconciled(session_id, reference, None, reason)
        claim = attempt.claim
        if not _may_have_sent_complete(claim) and now - claim.created_at > self.max_age:
            # The session is older than the claim: Amazon has canceled it (section 4), and we
            # never completed it, so no call can change the outcome.
            self.store.ledger.record_failure(session_id, reference, reason="expired", now=now)
            logger.info("reconcile gave up ref=%s: past 24 hours, never completed", reference)
            return Reconciled(session_id, reference, OutcomeKind.FAILURE, "expired")
        with self.leases.holding(session_id, owner):
            outcome = self._process(pending, claim, owner, attempt.processing)
        if outcome.kind is OutcomeKind.PENDING:
            after = self.store.ledger.get(session_id)
            if after is not None and not after.decided and not _may_have_sent_complete(after):
                backoff = min(
                    RETRY_BACKOFF * 2 ** min(max(after.attempts - 2, 0), 20), MAX_RETRY_BACKOFF
                )
                self.store.ledger.defer(session_id, until=now + backoff)
        logger.info(
            "reconciled ref=%s outcome=%s reason=%s",
            reference,
            outcome.kind.value,
            outcome.reason,
        )
        return Reconciled(session_id, reference, outcome.kind, outcome.reason)

    # -- the winner -------------------------------------------------------------------------

    def _process(
        self,
        pending: PendingCheckout,
        claim: Claim,
        owner: str,
        processing: bool | None,
        *,
        session: CheckoutSession | None = None,
    ) -> ReturnOutcome:
        """`processing`: whether the claim already bound the pending checkout (None: not tried);
        `session`: the session as a Get just read it, if one did."""
        session_id = claim.checkout_session_id
        if processing is None:
            processing = self.store.checkouts.start_processing(pending.reference, session_id)
            if not processing:
                self.store.ledger.release(session_id, owner)
        if not processing:
            # Another checkout session of this same pending checkout is being completed; the
            # claim was rolled back (or released), so nothing blocks that session.
            current = self.store.checkouts.get(pending.reference)
            if current is not None and current.state == PendingState.COMPLETED:
                return self._success(pending, "already-completed")
            return self._pending(pending, "other-session-in-flight")

        if claim.status == ClaimState.PENDING and claim.charge_id:
            return self._reconcile_charge(pending, claim)

        if session is None:
            # Only a claim that may have sent Complete can hide moved money; any other one that
            # Amazon does not know (a made-up id) is a plain failure.
            sent = _may_have_sent_complete(claim)
            if sent and claim.idempotency_key is None:
                # Known only by its reason (an older row): record it before the reason changes.
                self.store.ledger.before_complete(
                    session_id,
                    idempotency_key=idempotency_key_for(session_id),
                    confirmed=False,
                    now=self.clock(),
                )
            try:
                session = self.client.get_checkout_session(session_id)
            except (APIConnectionError, ServiceError, RateLimitError) as exc:
                _log_error("get_checkout_session", exc)
                return self._mark_pending(pending, session_id, "get-unavailable")
            except NotFoundError as exc:
                _log_error("get_checkout_session", exc)
                if sent:
                    return self._mark_pending(pending, session_id, "get-not-found")
                return self._record_failure(pending, session_id, "not-found")
            except APIError as exc:
                _log_error("get_checkout_session", exc)
                if sent:  # Complete may have gone through before: keep reconciling
                    return self._mark_pending(pending, session_id, f"get-{exc.reason_code}")
                return self._record_failure(pending, session_id, exc.reason_code or "get-error")

        if not _belongs_to(session, pending):
            # Someone replays another checkout's session id on this return URL: refuse, and
            # leave no trace on the claim so the real owner can still complete it.
            logger.warning(
                "checkout return refused: session belongs to another checkout ref=%s",
                pending.reference,
            )
            self.store.ledger.abandon(session_id, pending.reference, owner)
            return self._failure(pending, "reference-mismatch")
        # Amazon's word that the session is this reference's (None: it names none).
        # Amazon's word that the session is this reference's (it names it): written with the
        # Complete about to be sent (`before_complete`), or at once when none will be.
        confirm = _session_reference(session) is not None and not claim.owner_confirmed
        # A session object without statusDetails has not told us it left Open; Complete is
        # Amazon's own state check (InvalidCheckoutSessionStatus), handled below.
        state = session.state or "Open"
        if state == "Open":
            refusal = None
            if self.clock() - pending.created_at > self.max_age:
                # Section 4: Amazon cancels a session not completed within 24 hours. One that
                # still reads Open is about to be canceled; completing it now would race that.
                refusal = "expired"
            else:
                refusal = self._mismatch(pending, session)
            if refusal is None:
                return self._complete(pending, session_id, confirm=confirm)
        if confirm:
            self.store.ledger.confirm_owner(session_id)
        if state == "Completed":
            return self._record_success(pending, session, "completed-before")
        if state == "Canceled":
            return self._record_failure(
                pending, session_id, session.status_details.reason_code or "Canceled"
            )
        if state != "Open":
            logger.warning("checkout session in unknown state %r", state)
            return self._mark_pending(pending, session_id, "unknown-state")
        logger.warning("checkout not completed: %s ref=%s", refusal, pending.reference)
        return self._record_failure(pending, session_id, refusal or "refused")

    def _mismatch(self, pending: PendingCheckout, session: CheckoutSession) -> str | None:
        """Why this Open session is not the one we offered, or None when it matches."""
        # A field Amazon left out is not a mismatch: Complete itself enforces the amount
        # (AmountMismatch) and the type (a setup-only `{}` fails on a paying session).
        if pending.kind == CheckoutKind.WALLET_SETUP:
            if session.charge_permission_type not in (None, "PaymentMethodOnFile"):
                return "type-mismatch"
            if session.setup_only is False:
                return "setup-only-mismatch"
            return None
        if session.charge_permission_type not in (None, "OneTime"):
            return "type-mismatch"
        if session.setup_only:
            return "setup-only-mismatch"
        amount = session.charge_amount
        if amount is not None and (
            pending.amount is None
            or amount.amount != pending.amount
            or amount.currency_code != pending.currency
        ):
            return "amount-mismatch"
        return None

    def _complete(
        self, pending: PendingCheckout, session_id: str, *, confirm: bool
    ) -> ReturnOutcome:
        charge_amount = (
            Price.of(pending.amount, pending.currency)
            if pending.kind == CheckoutKind.ONE_TIME and pending.amount is not None
            else None
        )
        key = idempotency_key_for(session_id)
        # From here on the claim may have sent Complete: a 404 keeps it pending, and it can
        # never move to another reference.
        self.store.ledger.before_complete(
            session_id, idempotency_key=key, confirmed=confirm, now=self.clock()
        )
        try:
            result = self.client.complete_checkout_session(
                session_id, charge_amount, idempotency_key=key
            )
        except ConflictError as exc:
            _log_error("complete_checkout_session", exc)
            if exc.reason_code in _RECHECK_REASONS:
                return self._decide_after_conflict(pending, session_id)
            return self._record_failure(pending, session_id, exc.reason_code or "conflict")
        except (APIConnectionError, ServiceError, RateLimitError) as exc:
            _log_error("complete_checkout_session", exc)
            return self._mark_pending(pending, session_id, "complete-unknown")
        except APIError as exc:
            _log_error("complete_checkout_session", exc)
            return self._record_failure(pending, session_id, exc.reason_code or "complete-error")

        session = result.checkout_session
        if result.authorization_pending:
            logger.info("checkout completed with authorization pending ref=%s", pending.reference)
            return self._mark_pending(
                pending,
                session_id,
                "authorization-pending",
                charge_permission_id=session.charge_permission_id,
                charge_id=session.charge_id,
            )
        if session.state == "Canceled":
            return self._record_failure(
                pending, session_id, session.status_details.reason_code or "Canceled"
            )
        if session.state not in ("Completed", ""):
            return self._mark_pending(pending, session_id, f"complete-state-{session.state}")
        return self._record_success(pending, session, "completed", session_id=session_id)

    def _decide_after_conflict(self, pending: PendingCheckout, session_id: str) -> ReturnOutcome:
        try:
            session = self.client.get_checkout_session(session_id)
        except AmazonPayError as exc:
            _log_error("get_checkout_session", exc)
            return self._mark_pending(pending, session_id, "recheck-unavailable")
        if not _belongs_to(session, pending):
            return self._record_failure(pending, session_id, "reference-mismatch")
        if session.state == "Completed":
            return self._record_success(pending, session, "completed-before")
        if session.state == "Canceled":
            return self._record_failure(
                pending, session_id, session.status_details.reason_code or "Canceled"
            )
        return self._mark_pending(pending, session_id, f"recheck-state-{session.state}")

    def _reconcile_charge(self, pending: PendingCheckout, claim: Claim) -> ReturnOutcome:
        """After a 202: the session is completed; the charge's authorization decides."""
        session_id = claim.checkout_session_id
        assert claim.charge_id is not None
        try:
            charge = self.client.get_charge(claim.charge_id)
        except AmazonPayError as exc:
            _log_error("get_charge", exc)
            return self._mark_pending(pending, session_id, "charge-unavailable")
        if charge.state in _SUCCESS_CHARGE_STATES:
            self.store.ledger.record_success(
                pending,
                session_id,
                charge_permission_id=claim.charge_permission_id,
                charge_id=claim.charge_id,
                now=self.clock(),
                charge_state=charge.state,
            )
            return self._success(pending, "authorized")
        if charge.state in _FAILED_CHARGE_STATES:
            return self._record_failure(
                pending, session_id, charge.status_details.reason_code or charge.state
            )
        return self._mark_pending(pending, session_id, "authorization-pending")

    # -- recording and outcomes -------------------------------------------------------------

    def _record_success(
        self,
        pending: PendingCheckout,
        session: CheckoutSession,
        reason: str,
        *,
        session_id: str | None = None,
    ) -> ReturnOutcome:
        details = session.payment_details
        # An Authorize-intent checkout (AMAZON_PAY_PAYMENT_INTENT) leaves its charge Authorized,
        # for staff to capture; AuthorizeWithCapture's is captured with the Complete.
        authorize_only = details is not None and details.payment_intent == "Authorize"
        self.store.ledger.record_success(
            pending,
            session_id or session.checkout_session_id,
            charge_permission_id=session.charge_permission_id,
            charge_id=session.charge_id,
            now=self.clock(),
            charge_state=ChargeState.AUTHORIZED if authorize_only else None,
        )
        logger.info("checkout completed ref=%s kind=%s", pending.reference, pending.kind)
        return self._success(pending, reason)

    def _record_failure(
        self, pending: PendingCheckout, session_id: str, reason: str
    ) -> ReturnOutcome:
        self.store.ledger.record_failure(
            session_id, pending.reference, reason=reason, now=self.clock()
        )
        logger.info("checkout not completed ref=%s reason=%s", pending.reference, reason)
        return self._failure(pending, reason)

    def _mark_pending(
        self,
        pending: PendingCheckout,
        session_id: str,
        reason: str,
        *,
        charge_permission_id: str | None = None,
        charge_id: str | None = None,
    ) -> ReturnOutcome:
        self.store.ledger.mark_pending(
            session_id,
            reason=reason,
            now=self.clock(),
            charge_permission_id=charge_permission_id,
            charge_id=charge_id,
        )
        logger.info("checkout outcome pending ref=%s reason=%s", pending.reference, reason)
        return self._pending(pending, reason)

    def _from_claim(self, pending: PendingCheckout, claim: Claim) -> ReturnOutcome:
        if claim.status == ClaimState.COMPLETED:
            return self._success(pending, "already-decided")
        if claim.status == ClaimState.FAILED:
            return self._failure(pending, claim.reason or "already-failed")
        return self._pending(pending, claim.reason or "pending")

    def _foreign(self, pending: PendingCheckout, session_id: str) -> ReturnOutcome:
        logger.warning(
            "checkout return refused: session id recorded for another checkout ref=%s",
            pending.reference,
        )
        return self._failure(pending, "foreign-session")

    @staticmethod
    def _success(pending: PendingCheckout, reason: str) -> ReturnOutcome:
        return ReturnOutcome(OutcomeKind.SUCCESS, pending.kind, pending.reference, reason)

    @staticmethod
    def _failure(pending: PendingCheckout, reason: str) -> ReturnOutcome:
        return ReturnOutcome(OutcomeKind.FAILURE, pending.kind, pending.reference, reason)

    @staticmethod
    def _pending(pending: PendingCheckout, reason: str) -> ReturnOutcome:
        return ReturnOutcome(OutcomeKind.PENDING, pending.kind, pending.reference, reason)


def _may_have_sent_complete(claim: Claim) -> bool:
    """Whether Complete may have gone out for this claim (so money may have moved)."""
    if claim.idempotency_key is not None or claim.charge_id is not None:
        return True
    # Claims recorded before `before_complete` existed: known by their pending reasons.
    reason = claim.reason or ""
    return reason in _LEGACY_SENT_REASONS or reason.startswith(_LEGACY_SENT_PREFIXES)


def _session_reference(session: CheckoutSession) -> str | None:
    """Our pending reference as Amazon echoes it: merchantReferenceId, else the return URL's ref."""
    if session.merchant_reference_id:
        return session.merchant_reference_id
    details = session.web_checkout_details
    if details is None or not details.checkout_result_return_url:
        return None
    refs = parse_qs(urlsplit(details.checkout_result_return_url).query).get("ref", [])
    return refs[0] if len(refs) == 1 else None


def _belongs_to(session: CheckoutSession, pending: PendingCheckout) -> bool:
    """False when the session names another checkout of ours (a replayed session id).

    Amazon echoes the signed button payload's merchantMetadata; a session that carries neither
    it nor our return URL cannot be told apart, and is accepted with a warning rather than
    failing a buyer who paid.
    """
    reference = _session_reference(session)
    if reference is None:
        logger.warning(
            "checkout session carries no merchant reference ref=%s; relying on Amazon's checks",
            pending.reference,
        )
        return True
    return secrets.compare_digest(reference, pending.reference)


def _log_error(operation: str, exc: AmazonPayError) -> None:
    """Status, reasonCode and Amazon's request id; never the message body, keys or payloads."""
    if isinstance(exc, APIError):
        logger.warning(
            "amazon pay %s failed: status=%s reason_code=%s request_id=%s",
            operation,
            exc.status,
            exc.reason_code,
            exc.request_id,
        )
    elif isinstance(exc, APIConnectionError):
        logger.warning(
            "amazon pay %s: no response (may have been applied: %s)",
            operation,
            exc.may_have_been_applied,
        )
    else:
        logger.warning("amazon pay %s failed: %s", operation, type(exc).__name__)
