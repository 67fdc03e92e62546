"""What a stranger can make the return cost, and whose a checkout session is.

Amazon's HTTP is mocked with `responses`; the store is SQLite and PostgreSQL in turn. Every
limit is counted in Amazon calls seen at the HTTP boundary.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from amazonpay.client import AmazonPayClient
from storefront.abuse import client_key
from storefront.checkout import OutcomeKind, ReturnHandler
from storefront.db import PendingCheckout, Store
from storefront.db.schema import throttles
from storefront.states import CheckoutKind, ClaimState, PendingState
from tests.unit.test_checkout import (
    API,
    SESSION_A,
    Clock,
    complete_calls,
    complete_url,
    error_body,
    get_url,
    make_pending,
    session_json,
)

ATTACKER = "198.51.100.7"
GETS = re.compile(rf"{API}/checkoutSessions/[^/]+$")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def amazon() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def handler(private_key: rsa.RSAPrivateKey, store: Store, clock: Clock) -> ReturnHandler:
    client = AmazonPayClient(
        public_key_id="SANDBOX-UNITTEST",
        private_key=private_key,
        endpoint="https://pay-api.test",
        sleep=lambda _seconds: None,
    )
    return ReturnHandler(client, store, clock=clock, sleep=clock.advance, poll_interval=1.0)


def get_calls(amazon: responses.RequestsMock) -> list[Any]:
    return [c for c in amazon.calls if c.request.method == "GET"]


def junk() -> str:
    return str(uuid.uuid4())


def owner_of(pending: PendingCheckout) -> str:
    return pending.buyer_id


def stranger_pending(store: Store, clock: Clock, i: int) -> PendingCheckout:
    return make_pending(store, clock, buyer=f"stranger-{i}".ljust(22, "x"))


# -- "not found" -----------------------------------------------------------------------------------


def test_a_made_up_session_id_is_a_failure_even_after_a_failed_get(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert handler.handle_return([SESSION_A], [pending.reference]).kind is OutcomeKind.PENDING
    amazon.replace(responses.GET, get_url(SESSION_A), status=404, json=error_body("NotFound"))

    outcome = handler.handle_return([SESSION_A], [pending.reference])

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "not-found")
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.FAILED
    assert handler.reconcile(clock()).results == ()  # nothing left for cron to spend calls on


def test_a_claim_that_may_have_sent_complete_stays_pending_on_not_found(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert handler.handle_return([SESSION_A], [pending.reference]).kind is OutcomeKind.PENDING
    amazon.replace(responses.GET, get_url(SESSION_A), status=404, json=error_body("NotFound"))

    outcome = handler.handle_return([SESSION_A], [pending.reference])

    assert (outcome.kind, outcome.reason) == (OutcomeKind.PENDING, "get-not-found")
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.status, claim.owner_confirmed) == (ClaimState.PENDING, True)


# -- what one pending checkout and one client may cost ---------------------------------------------


def test_a_pending_checkout_accepts_three_unconfirmed_session_ids(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(GETS, status=404, json=error_body("NotFound"))
    for _ in range(3):
        outcome = handler.handle_return(
            [junk()], [pending.reference], client=ATTACKER, buyer=owner_of(pending)
        )
        assert outcome.reason == "not-found"

    refused = handler.handle_return(
        [junk()], [pending.reference], client="192.0.2.1", buyer=owner_of(pending)
    )

    assert (refused.kind, refused.reason) == (OutcomeKind.FAILURE, "too-many-sessions")
    assert len(get_calls(amazon)) == 3


def test_a_confirmed_session_does_not_use_up_the_checkouts_share(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    """A buyer whose payment was declined three times can still pay with a fourth session."""
    pending = make_pending(store, clock)
    sessions = [junk() for _ in range(4)]
    for session_id in sessions[:3]:
        amazon.get(
            get_url(session_id),
            json=session_json(session_id, pending, state="Canceled", reason_code="Declined"),
        )
        outcome = handler.handle_return([session_id], [pending.reference], buyer=owner_of(pending))
        assert outcome.reason == "Declined"
    amazon.get(get_url(sessions[3]), json=session_json(sessions[3], pending))
    amazon.post(complete_url(sessions[3]), json=session_json(sessions[3], pending, completed=True))

    outcome = handler.handle_return([sessions[3]], [pending.reference], buyer=owner_of(pending))

    assert outcome.kind is OutcomeKind.SUCCESS


def test_strangers_are_limited_per_client_and_a_buyer_on_the_same_address_is_not(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    amazon.get(GETS, status=404, json=error_body("NotFound"))
    refs = [stranger_pending(store, clock, i).reference for i in range(40)]
    outcomes = [handler.handle_return([junk()], [ref], client=ATTACKER) for ref in refs]
    for _ in range(20):  # made-up refs count too
        handler.handle_return([junk()], ["x" * 22], client=ATTACKER)

    limit = handler.limiter.limits.stranger.limit
    assert [o.reason for o in outcomes] == ["not-found"] * limit + ["throttled"] * (40 - limit)
    assert len(get_calls(amazon)) == limit
    # Another client is not affected.
    other = handler.handle_return([junk()], [refs[-1]], client="192.0.2.1")
    assert other.reason == "not-found"
    # The buyer behind the same address, with the cookie of their own checkout, pays.
    mine = make_pending(store, clock, buyer="real-buyer".ljust(22, "x"))
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, mine))
    amazon.post(complete_url(SESSION_A), json=session_json(SESSION_A, mine, completed=True))

    paid = handler.handle_return(
        [SESSION_A], [mine.reference], client=ATTACKER, buyer=mine.buyer_id
    )

    assert paid.kind is OutcomeKind.SUCCESS
    # Its refresh is never limited either.
    again = handler.handle_return([SESSION_A], [mine.reference], client=ATTACKER)
    assert again.kind is OutcomeKind.SUCCESS


def test_a_client_that_keeps_its_cookies_loses_the_owners_free_tries(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    amazon.get(GETS, status=404, json=error_body("NotFound"))
    limits = handler.limiter.limits
    for i in range(60):
        pending = stranger_pending(store, clock, i)
        handler.handle_return(
            [junk()], [pending.reference], client=ATTACKER, buyer=owner_of(pending)
        )

    # Free owner's tries until the strikes block them, then the stranger's share.
    assert len(get_calls(amazon)) == limits.owner_strikes.limit + 1 + limits.stranger.limit


def test_a_blocked_client_is_let_in_again_later(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    amazon.get(GETS, status=404, json=error_body("NotFound"))
    limit = handler.limiter.limits.stranger
    refs = [stranger_pending(store, clock, i).reference for i in range(limit.limit + 1)]
    reasons = [handler.handle_return([junk()], [r], client=ATTACKER).reason for r in refs]
    assert reasons[-1] == "throttled"
    clock.advance(limit.window.total_seconds() + 1)
    later = stranger_pending(store, clock, 99)

    assert handler.handle_return([junk()], [later.reference], client=ATTACKER).reason == "not-found"


def test_an_ipv6_client_is_counted_by_its_64_network() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "-"


# -- ownership is Amazon's word --------------------------------------------------------------------


def poisoned(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> tuple[PendingCheckout, PendingCheckout]:
    """The attacker replays the victim's session id on their own ref while Get answers 503."""
    victim = make_pending(store, clock, CheckoutKind.ONE_TIME, "20.00", buyer="v")
    attacker = make_pending(store, clock, CheckoutKind.ONE_TIME, "20.00", buyer="a")
    amazon.get(get_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    hijack = handler.handle_return(
        [SESSION_A], [attacker.reference], client=ATTACKER, buyer=attacker.buyer_id
    )
    assert hijack.kind is OutcomeKind.PENDING
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.reference, claim.owner_confirmed) == (attacker.reference, False)
    amazon.replace(responses.GET, get_url(SESSION_A), json=session_json(SESSION_A, victim))
    amazon.post(complete_url(SESSION_A), json=session_json(SESSION_A, victim, completed=True))
    return victim, attacker


def test_the_sessions_owner_completes_a_session_replayed_on_another_ref(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim, attacker = poisoned(handler, store, clock, amazon)

    outcome = handler.handle_return([SESSION_A], [victim.reference], buyer=victim.buyer_id)

    assert (outcome.kind, outcome.reference) == (OutcomeKind.SUCCESS, victim.reference)
    assert len(complete_calls(amazon)) == 1
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.reference, claim.status, claim.owner_confirmed) == (
        victim.reference,
        ClaimState.COMPLETED,
        True,
    )
    order = store.orders.get(victim.reference)
    assert order is not None
    after = store.checkouts.get(attacker.reference)
    assert after is not None
    assert (after.state, after.checkout_session_id) == (PendingState.OPEN, None)
    # The attacker's refresh is refused now, without an Amazon call.
    calls = len(amazon.calls)
    again = handler.handle_return([SESSION_A], [attacker.reference], buyer=attacker.buyer_id)
    assert (again.kind, again.reason) == (OutcomeKind.FAILURE, "foreign-session")
    assert len(amazon.calls) == calls


def test_reconciliation_in_between_frees_the_session_for_its_owner(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim, _ = poisoned(handler, store, clock, amazon)

    report = handler.reconcile(clock())

    assert [(r.kind, r.reason) for r in report.results] == [
        (OutcomeKind.FAILURE, "reference-mismatch")
    ]
    assert store.ledger.get(SESSION_A) is None
    outcome = handler.handle_return([SESSION_A], [victim.reference], buyer=victim.buyer_id)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert len(complete_calls(amazon)) == 1


def test_the_owner_waits_while_amazon_cannot_say_whose_session_it_is(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim, _ = poisoned(handler, store, clock, amazon)
    amazon.replace(responses.GET, get_url(SESSION_A), status=503, json=error_body("Unavailable"))

    waiting = handler.handle_return([SESSION_A], [victim.reference], buyer=victim.buyer_id)

    assert (waiting.kind, waiting.reason) == (OutcomeKind.PENDING, "ownership-unavailable")
    amazon.replace(responses.GET, get_url(SESSION_A), json=session_json(SESSION_A, victim))
    paid = handler.handle_return([SESSION_A], [victim.reference], buyer=victim.buyer_id)
    assert paid.kind is OutcomeKind.SUCCESS


def test_an_imposter_cannot_take_a_session_amazon_names_as_anothers(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    owner = make_pending(store, clock, buyer="o")
    imposter = make_pending(store, clock, buyer="i")
    amazon.get(get_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert handler.handle_return([SESSION_A], [owner.reference]).kind is OutcomeKind.PENDING
    amazon.replace(responses.GET, get_url(SESSION_A), json=session_json(SESSION_A, owner))

    refused = handler.handle_return([SESSION_A], [imposter.reference], buyer=imposter.buyer_id)

    assert (refused.kind, refused.reason) == (OutcomeKind.FAILURE, "foreign-session")
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.reference, claim.owner_confirmed) == (owner.reference, True)
    assert complete_calls(amazon) == []


# -- reconciliation --------------------------------------------------------------------------------


def junk_claims(store: Store, clock: Clock, count: int, lease: timedelta) -> list[str]:
    """Claims a flood left pending while Amazon's Get failed: none ever sent Complete."""
    sessions = []
    for i in range(count):
        pending = stranger_pending(store, clock, i)
        session_id = junk()
        store.ledger.claim(session_id, pending.reference, owner="o", now=clock(), lease=lease)
        store.ledger.mark_pending(session_id, reason="get-unavailable", now=clock())
        sessions.append(session_id)
        clock.advance(1)
    return sessions


def test_reconcile_settles_a_real_checkout_first_and_backs_off_the_rest(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    sessions = junk_claims(store, clock, 5, handler.lease)
    clock.advance(1)
    real = make_pending(store, clock, buyer="r")
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, real))
    amazon.post(complete_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert handler.handle_return([SESSION_A], [real.reference]).kind is OutcomeKind.PENDING
    amazon.replace(
        responses.POST, complete_url(SESSION_A), json=session_json(SESSION_A, real, completed=True)
    )
    for session_id in sessions:
        amazon.get(get_url(session_id), status=503, json=error_body("ServiceUnavailable"))

    first = handler.reconcile(clock(), limit=3)

    assert [(r.checkout_session_id, r.kind) for r in first.results] == [
        (SESSION_A, OutcomeKind.SUCCESS),
        (sessions[0], OutcomeKind.PENDING),
        (sessions[1], OutcomeKind.PENDING),
    ]
    # The ones tried wait their backoff; the others are due.
    second = handler.reconcile(clock(), limit=10)
    assert [r.checkout_session_id for r in second.results] == sessions[2:]
    assert handler.reconcile(clock(), limit=10).results == ()
    clock.advance(61)
    assert len(handler.reconcile(clock(), limit=10).results) == 5


def test_reconcile_gives_up_on_claims_that_never_sent_complete_after_24_hours(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    sessions = junk_claims(store, clock, 3, handler.lease)
    clock.advance(24 * 3600 + 1)

    report = handler.reconcile(clock())

    assert [(r.kind, r.reason) for r in report.results] == [(OutcomeKind.FAILURE, "expired")] * 3
    assert len(amazon.calls) == 0
    for session_id in sessions:
        claim = store.ledger.get(session_id)
        assert claim is not None
        assert claim.status == ClaimState.FAILED


def test_reconcile_purges_unused_pending_checkouts_after_24_hours(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    views = [stranger_pending(store, clock, i) for i in range(5)]
    used = make_pending(store, clock, buyer="u")
    amazon.get(get_url(SESSION_A), status=404, json=error_body("NotFound"))
    handler.handle_return([SESSION_A], [used.reference])
    clock.advance(12 * 3600)
    recent = make_pending(store, clock, buyer="n")
    clock.advance(12 * 3600 + 1)

    handler.reconcile(clock())

    assert [store.checkouts.get(p.reference) for p in views] == [None] * 5
    assert store.checkouts.get(used.reference) is not None  # its claim keeps it
    assert store.checkouts.get(recent.reference) is not None


def test_reconcile_forgets_per_address_counters_idle_for_24_hours(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    amazon.get(GETS, status=404, json=error_body("NotFound"))
    for i in range(30):  # 30 addresses, one junk return each
        handler.handle_return(
            [junk()], [stranger_pending(store, clock, i).reference], client=f"203.0.113.{i}"
        )
    clock.advance(24 * 3600 + 1)
    handler.handle_return([junk()], [stranger_pending(store, clock, 99).reference], client=ATTACKER)

    handler.reconcile(clock())

    with store.engine.connect() as conn:
        keys = conn.execute(select(throttles.c.throttle_key)).scalars().all()
    assert keys == [f"return:stranger:{client_key(ATTACKER)}"]  # only the recent one is kept


def test_buyers_behind_one_address_whose_payments_were_declined_are_never_locked_out(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    # Amazon confirms each session is its buyer's own: a declined payment is no strike, so
    # more such buyers than every allowance together (a busy NAT) all still reach Amazon.
    limits = handler.limiter.limits
    buyers = 2 * (limits.owner_strikes.limit + limits.stranger.limit)
    for i in range(buyers):
        pending = stranger_pending(store, clock, i)
        session_id = junk()
        amazon.get(
            get_url(session_id),
            json=session_json(session_id, pending, state="Canceled", reason_code="Declined"),
        )
        outcome = handler.handle_return(
            [session_id], [pending.reference], client=ATTACKER, buyer=owner_of(pending)
        )
        assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "Declined"), i

    assert len(get_calls(amazon)) == buyers
