"""The soak's verdict, from both sides: what the simulator applied against what the shop's
PostgreSQL tables hold, what buyers were shown, and what the shop answered. Saved-wallet
charges and staff refunds are judged in bench/soak_money.py."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.soak_buyers import Journey, Recorder
from bench.soak_deploy import KEEPALIVE_SECONDS
from bench.soak_sim import AmazonObject, AmazonSession
from bench.soak_staff import StaffLog

UNDECIDED_CLAIMS = ("claimed", "pending")
COMPLETE_KIND = "complete_checkout_session"
CHARGE_KIND = "create_charge"
REFUND_KIND = "create_refund"
# A request in flight at the SIGKILL may end this long after it with no response (the kernel
# resets the connection at once; this is only scheduling slack on a loaded 2-core machine).
KILL_SLACK = 1.0
# The server closes a kept-alive connection after KEEPALIVE_SECONDS idle; a request sent just
# then finds it closed. Its client saw the connection idle for about that long (a little less:
# the server's clock starts when the answer is sent, the client's when it has read it).
KEEPALIVE_SLACK = 0.25


@dataclass
class ShopTables:
    """The rows the checks read, straight from PostgreSQL."""

    operations: list[dict[str, Any]]
    pending_checkouts: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    wallets: list[dict[str, Any]]
    refunds: list[dict[str, Any]]

    def undecided(self) -> list[dict[str, Any]]:
        return [row for row in self.operations if row["status"] in UNDECIDED_CLAIMS]

    def pending_refunds(self) -> list[dict[str, Any]]:
        return [row for row in self.refunds if row["state"] == "pending"]


def read_tables(database_url: str) -> ShopTables:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:

        def rows(sql: str) -> list[dict[str, Any]]:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]

        return ShopTables(
            operations=rows(
                "SELECT operation_key, kind, reference, status, reason, charge_permission_id,"
                " charge_id, result_id, idempotency_key, attempts, lease_expires_at"
                " FROM operations"
            ),
            pending_checkouts=rows(
                "SELECT reference, kind, state, checkout_session_id, amount FROM pending_checkouts"
            ),
            orders=rows(
                "SELECT reference, status, amount, checkout_session_id, charge_permission_id,"
                " charge_id, source, captured_amount, refunded_amount, refund_reserved_amount"
                " FROM orders"
            ),
            wallets=rows(
                "SELECT checkout_session_id, charge_permission_id, reference, state"
                " FROM saved_payment_methods"
            ),
            refunds=rows(
                "SELECT request_id, order_reference, refund_id, state, amount, reason FROM refunds"
            ),
        )


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Kill:
    instance: str
    at: float  # monotonic


def check_all(
    *,
    sessions: dict[str, AmazonSession],
    objects: dict[str, AmazonObject],
    log: list[dict[str, Any]],
    staff: StaffLog,
    button_sessions: set[str],
    tables: ShopTables,
    recorder: Recorder,
    kills: list[Kill],
    log_gaps: int,
) -> tuple[list[Check], dict[str, int]]:
    """Every check of the brief; returns them and the matched counts for the table."""
    from bench.soak_money import money_checks, money_counts  # it builds on this module

    checks = [
        _simulator_to_shop(sessions, tables),
        _shop_to_simulator(sessions, tables),
        _nothing_undecided(tables),
        _no_failure_for_moved_money(sessions, recorder.journeys),
        _no_5xx(recorder, kills),
        _pages_known(recorder),
        _journeys_reached_amazon(recorder.journeys),
        _same_sessions(sessions, button_sessions, recorder.journeys, log_gaps),
        _once_per_checkout(sessions, recorder.journeys),
        *money_checks(objects=objects, log=log, tables=tables, recorder=recorder, staff=staff),
    ]
    moved = [s for s in sessions.values() if s.money_moved]
    counts = {
        "sessions at the simulator": len(sessions),
        "sessions completed at the simulator": sum(
            1 for s in sessions.values() if s.state == "Completed"
        ),
        "sessions that moved money": len(moved),
        "one-time charges authorized or captured": sum(
            1 for s in moved if s.charge_permission_type != "PaymentMethodOnFile"
        ),
        "wallets saved at the simulator": sum(
            1 for s in moved if s.charge_permission_type == "PaymentMethodOnFile"
        ),
        "orders in the shop": len(tables.orders),
        "saved wallets in the shop": len(tables.wallets),
        "operations in the ledger": len(tables.operations),
        "operations completed": sum(1 for r in tables.operations if r["status"] == "completed"),
        "operations failed": sum(1 for r in tables.operations if r["status"] == "failed"),
        "refunds in the shop": len(tables.refunds),
        "matched both ways": sum(
            1 for s in moved if not _mismatch_of(s, tables, index=_index(tables))
        ),
        **money_counts(objects=objects, log=log, tables=tables),
    }
    return checks, counts


@dataclass
class _Index:
    operations: dict[str, list[dict[str, Any]]]
    orders: dict[str, list[dict[str, Any]]]
    wallets: dict[str, list[dict[str, Any]]]


def _index(tables: ShopTables) -> _Index:
    operations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    wallets: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in tables.operations:
        operations[row["operation_key"]].append(row)
    for row in tables.orders:
        orders[row["checkout_session_id"]].append(row)
    for row in tables.wallets:
        wallets[row["checkout_session_id"]].append(row)
    return _Index(operations, orders, wallets)


def _mismatch_of(session: AmazonSession, tables: ShopTables, *, index: _Index) -> str | None:
    """Why this session's record in the shop is not exactly what the simulator holds."""
    sid = session.checkout_session_id
    operations = index.operations.get(sid, [])
    orders = index.orders.get(sid, [])
    wallets = index.wallets.get(sid, [])
    if session.money_moved:
        if len(operations) != 1 or operations[0]["status"] != "completed":
            return f"moved money, ledger has {[(o['status'], o['reason']) for o in operations]}"
        if session.charge_permission_type == "PaymentMethodOnFile":
            if orders or len(wallets) != 1:
                return f"wallet saved, shop has {len(wallets)} wallets, {len(orders)} orders"
            if wallets[0]["charge_permission_id"] != session.charge_permission_id:
                return "wallet saved under another charge permission"
            return None
        if wallets or len(orders) != 1:
            return f"charge {session.charge_state}, shop has {len(orders)} orders"
        order = orders[0]
        if order["charge_id"] != session.charge_id:
            return f"order names charge {order['charge_id']}, Amazon {session.charge_id}"
        if session.charge_amount is not None and Decimal(order["amount"]) != session.charge_amount:
            return f"order amount {order['amount']}, Amazon charged {session.charge_amount}"
        return None
    if orders or wallets:
        return f"nothing moved ({session.state}/{session.charge_state}) but the shop has a record"
    if any(o["status"] == "completed" for o in operations):
        return f"nothing moved ({session.state}/{session.charge_state}) but the ledger completed"
    if len(operations) > 1:
        return "more than one ledger operation"
    return None


def _simulator_to_shop(sessions: dict[str, AmazonSession], tables: ShopTables) -> Check:
    check = Check("every session the simulator holds maps to exactly one shop record")
    index = _index(tables)
    for session in sessions.values():
        problem = _mismatch_of(session, tables, index=index)
        if problem:
            check.problems.append(f"session {session.checkout_session_id}: {problem}")
    return check


def _shop_to_simulator(sessions: dict[str, AmazonSession], tables: ShopTables) -> Check:
    check = Check("every shop record maps to exactly one thing the simulator applied")
    for row in tables.orders:
        if row["source"] != "checkout":
            continue  # a saved-wallet charge: bench/soak_money.py matches it
        session = sessions.get(row["checkout_session_id"] or "")
        if session is None or not session.money_moved or session.charge_id != row["charge_id"]:
            check.problems.append(f"order {row['reference']}: no matching charge at the simulator")
    for row in tables.wallets:
        session = sessions.get(row["checkout_session_id"])
        if session is None or session.charge_permission_id != row["charge_permission_id"]:
            check.problems.append(f"wallet {row['charge_permission_id']}: not saved at Amazon")
    for row in tables.operations:
        if row["kind"] in (CHARGE_KIND, REFUND_KIND):
            continue  # bench/soak_money.py matches them
        if row["kind"] != COMPLETE_KIND:
            check.problems.append(
                f"operation {row['operation_key']} of kind {row['kind']}: the soak drives no "
                "such flow, so nothing should have made it"
            )
            continue
        session = sessions.get(row["operation_key"])
        if session is None:
            check.problems.append(f"operation {row['operation_key']}: unknown to the simulator")
        elif row["status"] == "completed" and not session.money_moved:
            check.problems.append(f"operation {row['operation_key']}: completed, nothing moved")
    # A pending checkout paid with a saved wallet is bound to its charge:<ref>:<n> operation.
    charged = {
        (r["operation_key"], r["reference"])
        for r in tables.operations
        if r["kind"] == CHARGE_KIND and r["status"] == "completed"
    }
    for row in tables.pending_checkouts:
        if row["state"] == "completed":
            sid = row["checkout_session_id"]
            if (sid, row["reference"]) in charged:
                continue  # bench/soak_money.py matches the charge
            session = sessions.get(sid or "")
            if session is None or not session.money_moved:
                check.problems.append(
                    f"pending checkout {row['reference']}: completed by {sid}, nothing moved"
                )
    return check


def _nothing_undecided(tables: ShopTables) -> Check:
    check = Check("nothing left undecided after reconciliation")
    for row in tables.undecided():
        check.problems.append(
            f"operation {row['operation_key']} ({row['kind']}) is {row['status']}: {row['reason']}"
        )
    for row in tables.pending_checkouts:
        if row["state"] == "processing":
            check.problems.append(f"pending checkout {row['reference']} still processing")
    for row in tables.orders:
        if row["status"] in ("auth_pending", "capture_pending"):
            check.problems.append(f"order {row['reference']} still {row['status']}")
    for row in tables.pending_refunds():
        check.problems.append(f"refund {row['request_id']} still pending")
    return check


def _no_failure_for_moved_money(
    sessions: dict[str, AmazonSession], journeys: list[Journey]
) -> Check:
    check = Check(
        "no buyer was shown the failure message for money that moved (nor success "
        "for money that did not)"
    )
    for journey in journeys:
        session = sessions.get(journey.checkout_session_id or "")
        if session is None:
            continue
        if session.money_moved and "failure" in journey.outcomes:
            check.problems.append(
                f"buyer {journey.buyer} saw failure for {session.checkout_session_id} "
                f"({journey.flow}, {journey.scenario}, seen {journey.outcomes})"
            )
        if not session.money_moved and "success" in journey.outcomes:
            check.problems.append(
                f"buyer {journey.buyer} saw success for {session.checkout_session_id} "
                f"({journey.flow}, {journey.scenario}), nothing moved"
            )
    return check


def _no_5xx(recorder: Recorder, kills: list[Kill]) -> Check:
    """No 5xx from the shop, ever. A request in flight to an instance at the moment it was
    SIGKILLed gets no response at all (a killed process answers nothing, not even a 503):
    those are allowed, counted, and the buyer's reload went to the other instance. So is a
    request that crossed the server's close of its idle kept-alive connection: the server never
    read it, and the browser resent it at once (bench/soak_buyers.py `shop`)."""
    check = Check("no 5xx from the shop; no lost response except in flight at the kill")
    allowed = resent = 0
    for item in recorder.requests:
        if item.status is not None and item.status >= 500:
            check.problems.append(
                f"{item.instance} answered {item.status} to {item.method} {item.path}"
            )
        elif item.status is None:
            in_flight = any(
                kill.instance == item.instance
                and item.started <= kill.at + 0.1
                and kill.at <= item.started + item.latency + KILL_SLACK
                for kill in kills
            )
            closed_idle = (
                item.resent
                and item.idle is not None
                and item.idle >= KEEPALIVE_SECONDS - KEEPALIVE_SLACK
            )
            if in_flight:
                allowed += 1
            elif closed_idle:
                resent += 1
            else:
                check.problems.append(
                    f"{item.instance} gave no response ({item.error}) to {item.method} {item.path}"
                )
    check.note = (
        f"{allowed} requests cut off by the kill (allowed); {resent} resent by the browser"
        " after the server closed its idle kept-alive connection (allowed)"
    )
    return check


def _pages_known(recorder: Recorder) -> Check:
    check = Check("every page a buyer saw after a return was success, pending or failure")
    for visit in recorder.visits:
        if visit.outcome not in ("success", "pending", "failure", "no-response"):
            check.problems.append(
                f"buyer {visit.buyer} saw {visit.outcome} for {visit.checkout_session_id}"
            )
    return check


def _journeys_reached_amazon(journeys: list[Journey]) -> Check:
    check = Check("every journey got through the shop's pages to Amazon and back")
    for journey in journeys:
        if journey.error:
            check.problems.append(f"buyer {journey.buyer} {journey.flow}: {journey.error}")
    return check


def _same_sessions(
    sessions: dict[str, AmazonSession],
    button_sessions: set[str],
    journeys: list[Journey],
    log_gaps: int,
) -> Check:
    check = Check("the simulator's sessions are exactly the buyers' sessions")
    ours = {j.checkout_session_id for j in journeys if j.checkout_session_id}
    if log_gaps:
        check.problems.append(f"the request log was read with {log_gaps} gaps")
    for sid in sorted(button_sessions - ours):
        check.problems.append(f"session {sid} at the simulator, no buyer made it")
    for sid in sorted(ours - button_sessions):
        check.problems.append(f"session {sid} of a buyer, not in the simulator's log")
    missing = set(sessions) ^ (button_sessions | ours)
    for sid in sorted(missing):
        check.problems.append(f"session {sid} not read back from the simulator")
    return check


def _once_per_checkout(sessions: dict[str, AmazonSession], journeys: list[Journey]) -> Check:
    check = Check("no pending checkout moved money twice")
    per_reference: Counter[str] = Counter()
    for journey in journeys:
        session = sessions.get(journey.checkout_session_id or "")
        if journey.reference and session is not None and session.money_moved:
            per_reference[journey.reference] += 1
    for reference, count in per_reference.items():
        if count > 1:
            check.problems.append(f"pending checkout {reference}: {count} sessions moved money")
    return check
