"""Staff refunds against the simulator on SQLite and PostgreSQL: partial, several and
over-limit refunds, the same request id twice, eight requests racing for the remainder, and a
lost Create Refund answer replayed with the same key."""

from __future__ import annotations

import threading
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric import rsa

from storefront.db import Store
from storefront.refunds import refund_key
from storefront.staff import Outcome
from storefront.states import ClaimState, RefundState
from tests.unit.console_support import Sim, desks, make_client, paid_order, sim

__all__ = ["sim"]  # fixtures


def settle(sim: Sim, desk_rows: object, request_id: str, outcome: str = "Refunded") -> None:
    row = desk_rows.get(request_id)  # type: ignore[attr-defined]
    answer = sim.control(f"refunds/{row.refund_id}/outcome", {"outcome": outcome})
    assert answer.status_code == 200, answer.text


def test_partial_and_several_refunds_add_up_and_settle_from_a_refresh(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00")
    first = d.refunds.refund(reference, Decimal("5.00"), "request-one-0001", actor="staff")
    second = d.refunds.refund(reference, Decimal("7.50"), "request-two-0002", actor="staff")
    assert first.outcome is second.outcome is Outcome.STARTED
    order = store.orders.get(reference)
    assert order is not None
    assert order.refund_reserved_amount == Decimal("12.50")
    assert order.refundable == Decimal("7.50")

    settle(sim, d.rows, "request-one-0001", "Refunded")
    settle(sim, d.rows, "request-two-0002", "Declined")
    d.refunds.refresh(reference)
    order = store.orders.get(reference)
    assert order is not None
    assert order.refunded_amount == Decimal("5.00")
    assert order.refund_reserved_amount == Decimal(0)  # the declined one is refundable again
    assert order.refundable == Decimal("15.00")
    states = {r.request_id: r.state for r in d.rows.for_order(reference)}
    assert states == {
        "request-one-0001": RefundState.REFUNDED,
        "request-two-0002": RefundState.DECLINED,
    }
    # Settling again changes nothing.
    d.refunds.refresh(reference)
    assert store.orders.get(reference) == order


def test_more_than_is_left_is_refused_counting_pending_refunds_and_calls_nothing(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00")
    assert d.refunds.refund(reference, Decimal("15.00"), "request-aaaa-01", actor="staff")
    over = d.refunds.refund(reference, Decimal("5.01"), "request-bbbb-02", actor="staff")
    assert over.outcome is Outcome.REFUSED
    assert "more than is left to refund (USD 5.00" in over.message
    assert len(sim.calls("CreateRefund")) == 1
    order = store.orders.get(reference)
    assert order is not None
    assert order.refund_reserved_amount == Decimal("15.00")
    assert d.rows.get("request-bbbb-02") is None


def test_the_same_request_id_twice_refunds_once_and_answers_the_same(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00")
    first = d.refunds.refund(reference, Decimal("4.00"), "same-request-id1", actor="staff")
    # Even with another amount (a tampered resubmit), the recorded request wins.
    again = d.refunds.refund(reference, Decimal("9.00"), "same-request-id1", actor="staff")
    assert first.outcome is again.outcome is Outcome.STARTED
    assert "USD 4.00" in again.message
    assert len(sim.calls("CreateRefund")) == 1
    order = store.orders.get(reference)
    assert order is not None
    assert order.refund_reserved_amount == Decimal("4.00")
    # And for another order the same request id is refused, nothing sent.
    other = paid_order(store, d.client, sim, "10.00")
    foreign = d.refunds.refund(other, Decimal("1.00"), "same-request-id1", actor="staff")
    assert foreign.outcome is Outcome.REFUSED
    assert len(sim.calls("CreateRefund")) == 1


def test_eight_requests_racing_for_the_remainder_never_refund_more_than_captured(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    d = desks(store, make_client(sim, private_key))
    reference = paid_order(store, d.client, sim, "20.00")
    d.refunds.refund(reference, Decimal("12.00"), "request-first-00", actor="staff")
    barrier = threading.Barrier(8)
    results: list[Outcome] = []
    lock = threading.Lock()

    def race(n: int) -> None:
        barrier.wait()
        result = d.refunds.refund(reference, Decimal("8.00"), f"racing-request-{n}", actor="staff")
        with lock:
            results.append(result.outcome)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(o.value for o in results) == ["refused"] * 7 + ["started"]
    calls = sim.calls("CreateRefund")
    assert len(calls) == 2
    assert len({c["idempotency_key"] for c in calls}) == 2  # one Create Refund per request id
    order = store.orders.get(reference)
    assert order is not None
    assert order.refund_reserved_amount + order.refunded_amount == Decimal("20.00")
    pending = [r for r in d.rows.for_order(reference) if r.state is RefundState.PENDING]
    assert sum(r.amount for r in pending) == Decimal("20.00")


def test_a_lost_create_refund_answer_is_replayed_with_the_same_key_by_reconcile(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    client = make_client(sim, private_key, attempts=1)
    d = desks(store, client)
    reference = paid_order(store, client, sim, "20.00")
    dropped = sim.control("faults", {"operation": "CreateRefund", "kind": "drop", "count": 1})
    assert dropped.status_code == 201
    lost = d.refunds.refund(reference, Decimal("6.00"), "lost-answer-0001", actor="staff")
    assert lost.outcome is Outcome.UNKNOWN  # never reported as failed: money may have moved
    claim = store.ledger.get(refund_key("lost-answer-0001"))
    assert claim is not None
    assert claim.status is ClaimState.PENDING
    order = store.orders.get(reference)
    assert order is not None
    assert order.refund_reserved_amount == Decimal("6.00")  # still held for it

    report = d.refunds.reconcile(limit=10)
    assert report.replayed == 1
    calls = sim.calls("CreateRefund")
    assert len(calls) == 2
    assert calls[0]["idempotency_key"] == calls[1]["idempotency_key"]
    assert calls[1]["fault"] == "replay"  # Amazon answered the first refund again
    row = d.rows.get("lost-answer-0001")
    assert row is not None
    assert row.refund_id is not None
    settle(sim, d.rows, "lost-answer-0001")
    assert d.refunds.reconcile(limit=10).settled == 1
    order = store.orders.get(reference)
    assert order is not None
    assert order.refunded_amount == Decimal("6.00")
    assert order.refund_reserved_amount == Decimal(0)


def test_a_refund_amazon_refuses_gives_the_amount_back(
    store: Store, sim: Sim, private_key: rsa.RSAPrivateKey
) -> None:
    client = make_client(sim, private_key)
    d = desks(store, client)
    reference = paid_order(store, client, sim, "20.00", intent="Authorize")
    # An authorized, uncaptured order has nothing to refund: refused before Amazon.
    refused = d.refunds.refund(reference, Decimal("1.00"), "not-captured-01", actor="staff")
    assert refused.outcome is Outcome.REFUSED
    assert sim.calls("CreateRefund") == []
