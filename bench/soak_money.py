"""The soak's checks of saved-wallet charges and staff refunds, from both sides: every Create
Charge and Create Refund the simulator applied (its request log, by idempotency key) against the
shop's `operations`, `orders` and `refunds` rows, and back; refund totals never above captured."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from bench.soak_buyers import Recorder
from bench.soak_check import CHARGE_KIND, REFUND_KIND, Check, ShopTables
from bench.soak_sim import AmazonObject
from bench.soak_staff import StaffLog

MOVED = ("Authorized", "CaptureInitiated", "Captured")
SOFT = ("SoftDeclined", "ProcessingFailure")  # moved nothing; charged once more (next key)
_CHARGE_KEY = re.compile(r"\Acharge:(?P<ref>.+):(?P<n>[0-9]+)\Z")
_REFUND_STATE = {"RefundInitiated": "pending", "Refunded": "refunded", "Declined": "declined"}


def applied_keys(log: list[dict[str, Any]], operation: str) -> set[str]:
    """Idempotency keys of the calls the simulator executed (201, the answer dropped or slow
    included); a replay of a key already applied and a fault answered instead are not."""
    return {
        str(e["idempotency_key"])
        for e in log
        if e.get("operation") == operation
        and e.get("status") == 201
        and e.get("fault") not in ("replay", "status")
        and e.get("idempotency_key")
    }


def sent_keys(log: list[dict[str, Any]], operation: str) -> set[str]:
    return {
        str(e["idempotency_key"])
        for e in log
        if e.get("operation") == operation and e.get("idempotency_key")
    }


def money_checks(
    *,
    objects: dict[str, AmazonObject],
    log: list[dict[str, Any]],
    tables: ShopTables,
    recorder: Recorder,
    staff: StaffLog,
) -> list[Check]:
    return [
        _charges_both_ways(objects, log, tables),
        _one_charge_per_order(tables, log, recorder),
        _saved_wallet_buyers(recorder, tables, objects),
        _refunds_both_ways(objects, log, tables),
        _refund_totals(objects, tables),
        _staff_got_through(staff),
    ]


def money_counts(
    *, objects: dict[str, AmazonObject], log: list[dict[str, Any]], tables: ShopTables
) -> dict[str, int]:
    charges = applied_keys(log, "CreateCharge")
    refunds = applied_keys(log, "CreateRefund")
    return {
        "saved-wallet Create Charge applied at the simulator": len(charges),
        "saved-wallet charges that moved money": sum(
            1
            for r in tables.operations
            if r["kind"] == CHARGE_KIND
            and r["charge_id"] in objects
            and objects[r["charge_id"]].state in MOVED
        ),
        "saved-wallet orders in the shop": sum(
            1 for r in tables.orders if r["source"] == "saved_wallet"
        ),
        "Create Refund applied at the simulator": len(refunds),
        "refunds refunded in the shop": sum(1 for r in tables.refunds if r["state"] == "refunded"),
        "refunds declined in the shop": sum(1 for r in tables.refunds if r["state"] == "declined"),
    }


def _by_key(tables: ShopTables, kind: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in tables.operations:
        if row["kind"] == kind and row["idempotency_key"]:
            found[row["idempotency_key"]].append(row)
    return found


def _charges_both_ways(
    objects: dict[str, AmazonObject], log: list[dict[str, Any]], tables: ShopTables
) -> Check:
    check = Check(
        "every Create Charge the simulator applied maps to one operation and its order, and back"
    )
    applied = applied_keys(log, "CreateCharge")
    sent = sent_keys(log, "CreateCharge")
    operations = _by_key(tables, CHARGE_KIND)
    orders_by_charge: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in tables.orders:
        if order["charge_id"]:
            orders_by_charge[order["charge_id"]].append(order)
    for key in sorted(applied):
        rows = operations.get(key, [])
        if len(rows) != 1:
            check.problems.append(f"Create Charge {key}: {len(rows)} operations in the shop")
            continue
        row = rows[0]
        charge = objects.get(row["charge_id"] or "")
        if charge is None:
            check.problems.append(f"{row['operation_key']}: applied, the shop has no charge id")
            continue
        orders = orders_by_charge.get(charge.object_id, [])
        if charge.state in MOVED:
            if row["status"] != "completed":
                check.problems.append(
                    f"{row['operation_key']}: charge {charge.state}, ledger {row['status']}"
                )
            if len(orders) != 1:
                check.problems.append(
                    f"{row['operation_key']}: charge {charge.state}, {len(orders)} orders"
                )
            elif (
                orders[0]["reference"] != row["reference"]
                or Decimal(orders[0]["amount"]) != charge.amount
            ):
                check.problems.append(
                    f"{row['operation_key']}: order {orders[0]['reference']} "
                    f"{orders[0]['amount']}, Amazon charged {charge.amount}"
                )
        else:
            if row["status"] == "completed":
                check.problems.append(
                    f"{row['operation_key']}: charge {charge.state}, ledger completed"
                )
            if any(o["status"] not in ("declined", "canceled") for o in orders):
                check.problems.append(
                    f"{row['operation_key']}: charge {charge.state}, an order stands"
                )
    for key, rows in operations.items():
        for row in rows:
            if row["status"] == "completed" and key not in applied:
                check.problems.append(
                    f"{row['operation_key']}: completed, no Create Charge applied at Amazon"
                )
            if row["charge_id"] and key not in sent:
                check.problems.append(f"{row['operation_key']}: a charge id never asked for")
    for order in tables.orders:
        if order["source"] != "saved_wallet":
            continue
        owner = [
            r
            for rows in operations.values()
            for r in rows
            if r["charge_id"] == order["charge_id"] and r["idempotency_key"] in applied
        ]
        if len(owner) != 1:
            check.problems.append(
                f"order {order['reference']}: {len(owner)} applied Create Charge calls"
            )
    check.note = f"{len(applied)} applied, {len(sent)} keys sent"
    return check


def _tries(recorder: Recorder) -> Counter[str]:
    """Saved-wallet journeys per order reference: after a failure the cart (and its reference)
    stays, so the person's next journey pays the same reference again - a new try."""
    return Counter(
        j.reference for j in recorder.journeys if j.flow == "saved_wallet" and j.reference
    )


def _one_charge_per_order(
    tables: ShopTables, log: list[dict[str, Any]], recorder: Recorder
) -> Check:
    check = Check(
        "one Create Charge per order reference key; charge:<ref>:<n>, n >= 2, only after a "
        "soft decline (or the buyer's new try after a failure)"
    )
    tries = _tries(recorder)
    applied = applied_keys(log, "CreateCharge")
    by_key = {r["operation_key"]: r for r in tables.operations if r["kind"] == CHARGE_KIND}
    moved_per_reference: Counter[str] = Counter()
    for key, row in by_key.items():
        match = _CHARGE_KEY.match(key)
        if match is None:
            check.problems.append(f"operation {key}: not charge:<ref>:<n>")
            continue
        attempt = int(match["n"])
        if attempt >= 2:
            before = by_key.get(f"charge:{match['ref']}:{attempt - 1}")
            retried = tries[match["ref"]] > 1  # a later journey submitted the same cart
            failed = before is not None and before["status"] == "failed"
            if not failed or (before is not None and before["reason"] not in SOFT and not retried):
                said = None if before is None else (before["status"], before["reason"])
                check.problems.append(f"{key}: attempt {attempt} after {said}")
        if row["status"] == "completed" and row["idempotency_key"] in applied:
            moved_per_reference[match["ref"]] += 1
    for reference, count in moved_per_reference.items():
        if count > 1:
            check.problems.append(f"order {reference}: {count} charges completed")
    return check


def _saved_wallet_buyers(
    recorder: Recorder, tables: ShopTables, objects: dict[str, AmazonObject]
) -> Check:
    check = Check(
        "no saved-wallet buyer was shown the failure message for money that moved (nor "
        "success for money that did not)"
    )
    moved = {
        r["reference"]
        for r in tables.operations
        if r["kind"] == CHARGE_KIND
        and r["charge_id"] in objects
        and objects[r["charge_id"]].state in MOVED
    }
    seen: Counter[str] = Counter()
    tries = _tries(recorder)
    for journey in recorder.journeys:
        if journey.flow != "saved_wallet" or journey.reference is None:
            continue
        seen[journey.reference] += 1
        later_try = seen[journey.reference] < tries[journey.reference]
        if journey.reference in moved and "failure" in journey.outcomes and not later_try:
            check.problems.append(
                f"buyer {journey.buyer} saw failure for {journey.reference} ({journey.scenario}, "
                f"seen {journey.outcomes}), money moved"
            )
        if journey.reference not in moved and "success" in journey.outcomes:
            check.problems.append(
                f"buyer {journey.buyer} saw success for {journey.reference} ({journey.scenario}),"
                " nothing moved"
            )
    return check


def _refunds_both_ways(
    objects: dict[str, AmazonObject], log: list[dict[str, Any]], tables: ShopTables
) -> Check:
    check = Check(
        "every Create Refund the simulator applied maps to one operation and refund row, and back"
    )
    applied = applied_keys(log, "CreateRefund")
    operations = _by_key(tables, REFUND_KIND)
    rows_by_request = {r["request_id"]: r for r in tables.refunds}
    orders = {o["reference"]: o for o in tables.orders}
    for key in sorted(applied):
        ops = operations.get(key, [])
        if len(ops) != 1:
            check.problems.append(f"Create Refund {key}: {len(ops)} operations in the shop")
            continue
        op = ops[0]
        request_id = str(op["operation_key"]).removeprefix("refund:")
        row = rows_by_request.get(request_id)
        refund = objects.get(op["result_id"] or "")
        if row is None or refund is None:
            check.problems.append(f"{op['operation_key']}: applied, row {row}, refund id missing")
            continue
        if row["refund_id"] != refund.object_id or Decimal(row["amount"]) != refund.amount:
            check.problems.append(
                f"{op['operation_key']}: row {row['refund_id']} {row['amount']}, Amazon "
                f"{refund.object_id} {refund.amount}"
            )
        if _REFUND_STATE.get(refund.state) != row["state"]:
            check.problems.append(
                f"{op['operation_key']}: Amazon {refund.state}, the shop {row['state']}"
            )
        order = orders.get(row["order_reference"])
        if order is None or order["charge_id"] != refund.parent_id:
            check.problems.append(f"{op['operation_key']}: refunds another order's charge")
    for row in tables.refunds:
        key_rows = [
            op
            for ops in operations.values()
            for op in ops
            if op["operation_key"] == f"refund:{row['request_id']}"
        ]
        if len(key_rows) != 1:
            check.problems.append(f"refund {row['request_id']}: {len(key_rows)} operations")
            continue
        op = key_rows[0]
        if row["state"] != "declined" and op["idempotency_key"] not in applied:
            check.problems.append(
                f"refund {row['request_id']} {row['state']}: no Create Refund applied at Amazon"
            )
        if op["status"] == "completed" and op["idempotency_key"] not in applied:
            check.problems.append(f"refund {row['request_id']}: completed, nothing applied")
    check.note = f"{len(applied)} applied"
    return check


def _refund_totals(objects: dict[str, AmazonObject], tables: ShopTables) -> Check:
    check = Check(
        "per order: refunds (not declined) <= captured, the order's totals and Amazon's "
        "refundedAmount agree"
    )
    live: dict[str, Decimal] = defaultdict(Decimal)
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    pending: dict[str, Decimal] = defaultdict(Decimal)
    for row in tables.refunds:
        amount = Decimal(row["amount"])
        if row["state"] != "declined":
            live[row["order_reference"]] += amount
        if row["state"] == "refunded":
            refunded[row["order_reference"]] += amount
        if row["state"] == "pending":
            pending[row["order_reference"]] += amount
    for order in tables.orders:
        reference = order["reference"]
        captured = Decimal(order["captured_amount"])
        if live[reference] > captured:
            check.problems.append(
                f"order {reference}: {live[reference]} refunded of {captured} captured"
            )
        if Decimal(order["refunded_amount"]) != refunded[reference]:
            check.problems.append(
                f"order {reference}: refunded_amount {order['refunded_amount']}, rows "
                f"{refunded[reference]}"
            )
        if Decimal(order["refund_reserved_amount"]) != pending[reference]:
            check.problems.append(
                f"order {reference}: refund_reserved_amount {order['refund_reserved_amount']}, "
                f"pending rows {pending[reference]}"
            )
        charge = objects.get(order["charge_id"] or "")
        if charge is not None and charge.refunded != live[reference]:
            check.problems.append(
                f"order {reference}: Amazon refunded {charge.refunded}, the shop {live[reference]}"
            )
    return check


def _staff_got_through(staff: StaffLog) -> Check:
    check = Check("staff signed in and every refund form answered as staff need")
    if not staff.signed_in:
        check.problems.append("staff never signed in")
    for action in staff.actions:
        if action.error:
            check.problems.append(f"refund of {action.reference} ({action.style}): {action.error}")
    styles = Counter(a.style for a in staff.actions if a.submits)
    check.note = f"{sum(styles.values())} refund actions: " + ", ".join(
        f"{name} {count}" for name, count in sorted(styles.items())
    )
    return check
