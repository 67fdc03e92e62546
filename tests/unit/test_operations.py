"""The operations ledger's exactly-once turn, on SQLite and a real PostgreSQL: one holder among
racing callers, the recorded outcome for everyone after, takeover after a crash, foreign keys,
and one payment per pending checkout whichever operation comes first.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from storefront.db import Store
from storefront.db.leases import LeaseKeeper
from storefront.operations import Intent, Operations, TurnKind
from storefront.states import CheckoutKind, ClaimState, OperationKind, PendingState


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


def operations(store: Store, clock: Clock, *, wait: float = 2.0) -> Operations:
    lease = timedelta(seconds=20)
    keeper = LeaseKeeper(store.ledger, lease=lease, clock=clock, every_seconds=60)
    return Operations(
        store,
        clock=clock,
        sleep=time.sleep,
        lease=lease,
        wait=timedelta(seconds=wait),
        leases=keeper,
        poll_interval=0.02,
    )


def pending_order(store: Store, clock: Clock, buyer: str = "b") -> str:
    return store.checkouts.find_or_create(
        buyer_id=buyer * 22,
        kind=CheckoutKind.ONE_TIME,
        amount=Decimal("12.00"),
        currency="USD",
        items=[],
        now=clock(),
        reuse_window=timedelta(hours=1),
    ).reference


def charge_intent(reference: str, attempt: int = 1) -> Intent:
    return Intent(
        key=f"charge:{reference}:{attempt}",
        kind=OperationKind.CREATE_CHARGE,
        reference=reference,
        idempotency_key=f"k{attempt}{reference}"[:32],
        request={"chargeAmount": {"amount": "12.00", "currencyCode": "USD"}},
        charge_permission_id="S01-1111111-1111111",
        bind_pending=True,
    )


def test_of_eight_racing_callers_one_holds_and_the_others_see_its_decision(
    store: Store,
) -> None:
    clock = Clock()
    ops = operations(store, clock)
    reference = pending_order(store, clock)
    intent = charge_intent(reference)
    barrier = threading.Barrier(8)
    seen: list[TurnKind] = []
    calls: list[int] = []

    def submit() -> None:
        barrier.wait()
        with ops.turn(intent) as turn:
            seen.append(turn.kind)
            if turn.kind is TurnKind.HELD:
                calls.append(1)
                time.sleep(0.2)  # the Amazon call
                assert store.ledger.decide(
                    intent.key, status=ClaimState.COMPLETED, reason="Authorized", now=clock()
                )

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert calls == [1]
    assert sorted(kind.value for kind in seen) == ["decided"] * 7 + ["held"]
    with ops.turn(intent) as again:
        assert again.kind is TurnKind.DECIDED
        assert again.stored_request() == dict(intent.request)


def test_an_undecided_operation_is_taken_over_after_its_lease_and_replays_the_stored_request(
    store: Store,
) -> None:
    clock = Clock()
    ops = operations(store, clock, wait=0.0)
    reference = pending_order(store, clock)
    first = charge_intent(reference)

    def die_mid_call() -> None:
        with ops.turn(first) as turn:
            assert turn.kind is TurnKind.HELD
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        die_mid_call()
    # A second submit with other terms still replays what was recorded first.
    changed = Intent(**{**first.__dict__, "request": {"chargeAmount": {"amount": "99.00"}}})
    with ops.turn(changed) as taken:
        assert taken.kind is TurnKind.HELD
        assert taken.claim is not None
        assert taken.claim.attempts == 2
        assert taken.stored_request() == dict(first.request)
        store.ledger.mark_pending(first.key, reason="create-charge-unknown", now=clock())
    with ops.turn(first) as reconciling:  # pending, lease released: the next visit takes over
        assert reconciling.kind is TurnKind.HELD
        assert reconciling.claim is not None
        assert reconciling.claim.status == ClaimState.PENDING


def test_a_live_claim_held_elsewhere_is_busy_and_a_foreign_reference_is_refused(
    store: Store,
) -> None:
    clock = Clock()
    ops = operations(store, clock, wait=0.0)
    reference = pending_order(store, clock)
    intent = charge_intent(reference)
    other = pending_order(store, clock, buyer="o")
    with ops.turn(intent) as held:
        assert held.kind is TurnKind.HELD
        with ops.turn(intent) as second:
            assert second.kind is TurnKind.BUSY
        stolen = Intent(**{**intent.__dict__, "reference": other})
        with ops.turn(stolen) as foreign:
            assert foreign.kind is TurnKind.FOREIGN


def test_one_payment_per_pending_checkout_whichever_operation_comes_first(
    store: Store,
) -> None:
    clock = Clock()
    ops = operations(store, clock)
    reference = pending_order(store, clock)
    assert store.checkouts.start_processing(reference, "9d2a8f0e-0d0b-4f59-8d1f-0123456789ab")

    with ops.turn(charge_intent(reference)) as turn:
        assert turn.kind is TurnKind.OTHER_IN_FLIGHT
    assert store.ledger.get(f"charge:{reference}:1") is None  # nothing left behind


def test_a_decision_is_recorded_once_with_its_effect(store: Store) -> None:
    clock = Clock()
    ops = operations(store, clock)
    reference = pending_order(store, clock)
    intent = charge_intent(reference)
    effects: list[str] = []
    with ops.turn(intent) as turn:
        assert turn.kind is TurnKind.HELD
        first = store.ledger.decide(
            intent.key,
            status=ClaimState.COMPLETED,
            reason="Authorized",
            now=clock(),
            charge_id="S01-1111111-1111111-C000001",
            effect=lambda _conn: effects.append("order"),
        )
        second = store.ledger.decide(
            intent.key,
            status=ClaimState.FAILED,
            reason="late",
            now=clock(),
            effect=lambda _conn: effects.append("again"),
        )
    assert (first, second, effects) == (True, False, ["order"])
    claim = store.ledger.get(intent.key)
    assert claim is not None
    assert (claim.status, claim.charge_id) == (ClaimState.COMPLETED, "S01-1111111-1111111-C000001")
    pending = store.checkouts.get(reference)
    assert pending is not None
    assert pending.state == PendingState.PROCESSING  # the use case marks it completed itself
    with pytest.raises(ValueError, match="not a decision"):
        store.ledger.decide(intent.key, status=ClaimState.PENDING, reason="x", now=clock())
