"""The soak's report: a plain-text table, two PNG plots (matplotlib, Agg) and summary.json."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display: runs on a headless machine and in CI
import matplotlib.pyplot as plt

from bench.soak_buyers import Recorder
from bench.soak_check import Check, Kill, ShopTables
from bench.soak_sim import AmazonSession, fault_label
from bench.soak_staff import StaffLog

OUTCOME_COLOURS = {
    "success": "tab:green",
    "pending": "tab:orange",
    "failure": "tab:red",
    "no-response": "tab:purple",
    "other": "tab:gray",
}
LATENCY_PLOT = "latency_over_time.png"
FAULT_PLOT = "outcomes_per_fault.png"


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>9} {'-':>9}"
    return f"{percentile(values, 0.5) * 1000:8.1f}ms {percentile(values, 0.99) * 1000:8.1f}ms"


def _bucket(outcome: str) -> str:
    return outcome if outcome in OUTCOME_COLOURS else "other"


def build_table(
    *,
    recorder: Recorder,
    sessions: dict[str, AmazonSession],
    tables: ShopTables,
    log: list[dict[str, Any]],
    checks: list[Check],
    counts: dict[str, int],
    facts: dict[str, str],
    staff: StaffLog | None = None,
) -> str:
    ledger = {row["operation_key"]: row["status"] for row in tables.operations}
    # A saved-wallet payment is judged by its order reference: the latest charge:<ref>:<n>.
    charged: dict[str, str] = {}
    for row in sorted(tables.operations, key=lambda r: str(r["operation_key"])):
        if row["kind"] == "create_charge":
            charged[str(row["reference"])] = str(row["status"])
    paid = {str(r["reference"]) for r in tables.orders if r["status"] == "paid"}
    applied: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in log:
        label = fault_label(entry)
        if label and entry.get("checkout_session_id"):
            applied[entry["checkout_session_id"]][label] += 1

    lines = [f"{key}: {value}" for key, value in facts.items()]
    head = (
        f"{'':24} {'journeys':>8} {'success':>7} {'pending':>7} {'failure':>7} {'error':>5} "
        f"{'moved':>5} {'ledger ok':>9} {'ledger fail':>11} {'none':>4}"
    )

    def rows(title: str, key: str, order: Sequence[str]) -> None:
        lines.extend(["", f"Outcomes per {title} (what the buyer saw last; the shop's ledger)"])
        lines.append(head)
        groups: dict[str, list[Any]] = defaultdict(list)
        for journey in recorder.journeys:
            groups[getattr(journey, key)].append(journey)
        for name in [*order, *sorted(set(groups) - set(order))]:
            group = groups.get(name, [])
            if not group:
                continue
            seen = Counter(_bucket(j.last_seen) for j in group)
            sids = [j.checkout_session_id for j in group if j.checkout_session_id]
            moved = sum(1 for s in sids if s in sessions and sessions[s].money_moved)
            status = Counter(ledger.get(s, "none") for s in sids)
            refs = [j.reference for j in group if j.flow == "saved_wallet" and j.reference]
            moved += sum(1 for r in refs if r in paid)
            status.update(charged.get(r, "none") for r in refs)
            extra = ""
            if key == "scenario" and name not in ("none",):
                hits = sum(applied[s][name] for s in sids)
                extra = f"  faults applied: {hits}" if hits else ""
            lines.append(
                f"{name:24} {len(group):8} {seen['success']:7} {seen['pending']:7} "
                f"{seen['failure']:7} {sum(1 for j in group if j.error):5} {moved:5} "
                f"{status['completed']:9} {status['failed']:11} {status['none']:4}{extra}"
            )

    rows("flow", "flow", ["one_time", "wallet_setup", "saved_wallet"])
    rows(
        "fault kind",
        "scenario",
        [
            "none",
            "5xx",
            "429",
            "dropped-after-apply",
            "slow-after-apply",
            "pending-202",
            "pending-auth-0701",
            "pending-declined-4354",
            "declined-3434",
            "buyer-canceled-3064",
            "canceled",
            "charge-5xx",
            "charge-429",
            "charge-dropped-after-apply",
            "saved-soft-declined",
            "saved-soft-declined-twice",
            "saved-hard-declined",
            "saved-pending",
        ],
    )
    if staff is not None:
        _staff_rows(lines, staff, tables)

    lines.extend(["", f"{'Latency (client side)':40} {'n':>6} {'p50':>10} {'p99':>10}"])
    by_flow: dict[str, list[float]] = defaultdict(list)
    by_step: dict[str, list[float]] = defaultdict(list)
    for visit in recorder.visits:
        if visit.outcome != "no-response":
            by_flow[visit.flow].append(visit.latency)
            by_step[visit.step].append(visit.latency)
    for name, values in sorted(by_flow.items()):
        lines.append(f"{_visited(name) + ', ' + name:40} {len(values):6} {_ms(values)}")
    for name, values in sorted(by_step.items()):
        lines.append(f"{'return or pay, ' + name:40} {len(values):6} {_ms(values)}")
    for route in ("/admin/orders/*/refund",):
        posts = [r.latency for r in recorder.requests if r.path == route and r.status]
        lines.append(f"{'POST ' + route:40} {len(posts):6} {_ms(posts)}")
    every = [r.latency for r in recorder.requests if r.status is not None]
    lines.append(f"{'every shop request':40} {len(every):6} {_ms(every)}")
    statuses = Counter(str(r.status or r.error) for r in recorder.requests)
    lines.append("shop answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())))

    lines.extend(["", "Counts matched"])
    lines.extend(f"  {name:44} {value:6}" for name, value in counts.items())
    lines.extend(["", "Checks"])
    for check in checks:
        verdict = "PASS" if check.passed else f"FAIL ({len(check.problems)})"
        note = f"  [{check.note}]" if check.note else ""
        lines.append(f"  {verdict:10} {check.name}{note}")
        lines.extend(f"             - {problem}" for problem in check.problems[:10])
        if len(check.problems) > 10:
            lines.append(f"             ... and {len(check.problems) - 10} more")
    return "\n".join(lines)


def _visited(flow: str) -> str:
    return "POST /checkout/saved" if flow == "saved_wallet" else "GET /checkout/return"


def _staff_rows(lines: list[str], staff: StaffLog, tables: ShopTables) -> None:
    """Staff refunds per submit style and per fault, with how the refunds settled."""
    states = {str(r["request_id"]): str(r["state"]) for r in tables.refunds}
    lines.extend(["", "Staff refunds (per style and fault; each submit's refund row)"])
    lines.append(
        f"{'':28} {'actions':>7} {'submits':>7} {'refunded':>8} {'declined':>8} "
        f"{'no row':>6} {'error':>5}"
    )
    groups: dict[str, list[Any]] = defaultdict(list)
    for action in staff.actions:
        groups[f"style {action.style}"].append(action)
        groups[f"fault {action.scenario}"].append(action)
    for name in sorted(groups):
        group = groups[name]
        ids = [request_id for a in group for request_id in {r for r, _ in a.submits}]
        seen = Counter(states.get(r, "no row") for r in ids)
        lines.append(
            f"{name:28} {len(group):7} {sum(len(a.submits) for a in group):7} "
            f"{seen['refunded']:8} {seen['declined']:8} {seen['no row']:6} "
            f"{sum(1 for a in group if a.error):5}"
        )


def plot_latency(
    recorder: Recorder, t0: float, kills: list[Kill], restarts: list[float], path: Path
) -> None:
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    groups: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for visit in recorder.visits:
        xs, ys = groups[_bucket(visit.outcome)]
        xs.append(visit.started - t0)
        ys.append(visit.latency * 1000)
    for outcome, (xs, ys) in groups.items():
        axes.scatter(
            xs, ys, s=8, alpha=0.6, label=f"{outcome} ({len(xs)})", color=OUTCOME_COLOURS[outcome]
        )
    for index, kill in enumerate(kills):
        axes.axvline(
            kill.at - t0,
            color="black",
            linestyle="--",
            label=f"SIGKILL {kill.instance}" if index == 0 else None,
        )
    for index, at in enumerate(restarts):
        axes.axvline(
            at - t0, color="tab:blue", linestyle=":", label="restarted" if index == 0 else None
        )
    axes.set_yscale("log")
    axes.set_xlabel("seconds since the buyers started")
    axes.set_ylabel("GET /checkout/return latency (ms, log)")
    axes.set_title("Return latency over time, by what the buyer was shown")
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_faults(recorder: Recorder, path: Path) -> None:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for journey in recorder.journeys:
        per[journey.scenario][_bucket(journey.last_seen) if not journey.error else "other"] += 1
    names = sorted(per, key=lambda name: (name != "none", name))
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    bottoms = [0] * len(names)
    for outcome, colour in OUTCOME_COLOURS.items():
        heights = [per[name][outcome] for name in names]
        if any(heights):
            axes.bar(names, heights, bottom=bottoms, color=colour, label=outcome)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axes.set_ylabel("journeys")
    axes.set_title("What the buyer was shown last, per fault kind")
    axes.tick_params(axis="x", labelrotation=30)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_summary(
    path: Path,
    checks: list[Check],
    counts: dict[str, int],
    recorder: Recorder,
    *,
    extra: dict[str, float | int],
) -> None:
    latencies = [v.latency for v in recorder.visits if v.outcome != "no-response"]
    summary = {
        "passed": all(check.passed for check in checks),
        "checks": [
            {"name": c.name, "passed": c.passed, "problems": c.problems, "note": c.note}
            for c in checks
        ],
        "counts": counts,
        "journeys": len(recorder.journeys),
        "return_latency_ms": {
            "p50": percentile(latencies, 0.5) * 1000 if latencies else None,
            "p99": percentile(latencies, 0.99) * 1000 if latencies else None,
            "mean": statistics.fmean(latencies) * 1000 if latencies else None,
        },
        "plots": [LATENCY_PLOT, FAULT_PLOT],
        **extra,
    }
    path.write_text(json.dumps(summary, indent=2))
