"""A fault soak: two shop instances on one PostgreSQL, the simulator failing at random, N buyers
for M minutes, one instance SIGKILLed and restarted midway; then reconciliation and a check from
both sides that every cent is accounted for.

    python bench/soak.py [--buyers 8] [--minutes 10] [--seed 1] [--out test-artifacts/soak]

Prints a table (outcomes per flow and per fault kind, latency p50/p99, counts matched, checks)
and writes latency_over_time.png, outcomes_per_fault.png, summary.json and table.txt into
--out. Exit status 0 when every check passes, 1 when one fails. README.md ("The soak") says
what runs and what is checked.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_buyers import Buyer, Recorder, run_buyer  # noqa: E402
from bench.soak_check import Kill, check_all, read_tables  # noqa: E402
from bench.soak_deploy import SoakDeployment, deployed  # noqa: E402
from bench.soak_report import (  # noqa: E402
    FAULT_PLOT,
    LATENCY_PLOT,
    build_table,
    plot_faults,
    plot_latency,
    write_summary,
)
from bench.soak_sim import (  # noqa: E402
    LogCollector,
    SimulatorControl,
    read_objects,
    read_sessions,
)
from bench.soak_staff import StaffLog, run_staff  # noqa: E402

# Pending authorizations (cards 0701 and 4354) settle 30 s later on the simulator's clock.
CLOCK_ADVANCE_SECONDS = 31
# A refund settles 5 s after it was made on the simulator's clock: a pass that still finds one
# pending (made by a replay during reconciliation) moves the clock this much on.
REFUND_SETTLE_SECONDS = 6
RESTART_AFTER_SECONDS = 2.0
KILL_WAIT_SECONDS = 10.0  # the kill waits this long at most for a return in flight to cut off
# A killed worker's claim is taken over only when its lease (90 s in the shop's settings) runs
# out; the passes go on, a second apart, this long at most.
RECONCILE_SECONDS = 150.0
POLL_GRACE_SECONDS = 30.0  # buyers stop refreshing a pending page this long after the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=8, help="buyer threads (default 8)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long buyers buy")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "soak")
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="when to SIGKILL, as a fraction of the run"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.35, help="share of journeys given a fault"
    )
    parser.add_argument(
        "--poll-grace",
        type=float,
        default=POLL_GRACE_SECONDS,
        help="seconds buyers keep refreshing a pending page after the run",
    )
    parser.add_argument(
        "--one-address",
        action="store_true",
        help="every buyer from 127.0.0.1 (people behind one NAT) instead of one address each",
    )
    return parser.parse_args(argv)


def routes_present(deployment: SoakDeployment) -> dict[str, bool]:
    """Which money-moving routes beyond the return the shop has (404 = not there yet)."""
    base = deployment.router.instances[0].url
    return {
        "POST /checkout/saved": requests.get(base + "/checkout/saved", timeout=10).status_code
        != 404,
        "/admin": requests.get(base + "/admin", timeout=10, allow_redirects=False).status_code
        != 404,
    }


def reconcile(deployment: SoakDeployment, control: SimulatorControl) -> list[str]:
    """`flask --app app reconcile` until the ledger has nothing undecided and no refund is
    pending (bounded)."""
    outputs: list[str] = []
    deadline = time.monotonic() + RECONCILE_SECONDS
    while time.monotonic() < deadline:
        result = deployment.flask("reconcile", "--limit", "500")
        said = result.stdout.strip().splitlines()
        outputs.append(" | ".join(said) if said else f"exit {result.returncode}")
        if result.returncode != 0:
            outputs.append(result.stderr.strip()[-2000:])
            break
        tables = read_tables(deployment.database_url)
        undecided = tables.undecided()
        pending_refunds = tables.pending_refunds()
        if not undecided and not pending_refunds:
            break
        if pending_refunds:
            control.advance_clock(REFUND_SETTLE_SECONDS)
            outputs.append(
                f"{len(pending_refunds)} refunds pending: clock +{REFUND_SETTLE_SECONDS} s"
            )
        now = datetime.now(UTC)
        outputs.append(
            "still undecided: "
            + ", ".join(
                f"{r['operation_key']} {r['kind']}/{r['status']}/{r['reason']} attempts "
                f"{r['attempts']} lease {_seconds_left(r['lease_expires_at'], now)}"
                for r in undecided[:5]
            )
        )
        time.sleep(1.0)
    return outputs


def _seconds_left(expires: datetime | None, now: datetime) -> str:
    if expires is None:
        return "none"
    # The shop stores naive UTC (storefront/db/schema.py UTCDateTime).
    left = (expires.replace(tzinfo=UTC) - now).total_seconds()
    return f"{left:+.1f} s"


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    facts: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, deployed(Path(tmp)) as deployment:
        routes = routes_present(deployment)
        facts["routes beyond the return"] = ", ".join(
            f"{name} {'present' if there else 'absent'}" for name, there in routes.items()
        )
        control = SimulatorControl(deployment.simulator.base_url)
        collector = LogCollector(control)
        collector.start()
        recorder = Recorder()
        t0 = time.monotonic()
        deadline = t0 + args.minutes * 60
        buyers = [
            Buyer(
                number,
                router=deployment.router,
                simulator_url=deployment.simulator.base_url,
                control=control,
                recorder=recorder,
                rng=random.Random(f"{args.seed}-{number}"),
                fault_rate=args.fault_rate,
                stop_polling_at=deadline + args.poll_grace,
                one_address=args.one_address,
            )
            for number in range(args.buyers)
        ]
        threads = [
            threading.Thread(target=run_buyer, args=(b, deadline), name=f"buyer-{b.number}")
            for b in buyers
        ]
        staff = Buyer(
            args.buyers,
            router=deployment.router,
            simulator_url=deployment.simulator.base_url,
            control=control,
            recorder=recorder,
            rng=random.Random(f"{args.seed}-staff"),
            fault_rate=args.fault_rate,
            stop_polling_at=deadline + args.poll_grace,
            one_address=args.one_address,
        )
        staff_log = StaffLog()
        threads.append(
            threading.Thread(target=run_staff, args=(staff, deadline, staff_log), name="staff")
        )
        for thread in threads:
            thread.start()

        time.sleep(max(0.0, t0 + args.kill_at * (deadline - t0) - time.monotonic()))
        victim = deployment.router.busy_victim(KILL_WAIT_SECONDS) or rng.choice(
            deployment.router.instances
        )
        pids = deployment.kill(victim)
        kills = [Kill(victim.name, victim.kills[-1])]
        time.sleep(RESTART_AFTER_SECONDS)
        deployment.restart(victim)
        facts["kill"] = (
            f"SIGKILL {victim.name} (pids {pids}) at {kills[0].at - t0:.1f} s, "
            f"restarted and healthy at {victim.restarts[-1] - t0:.1f} s"
        )

        for thread in threads:
            thread.join()
        buying = time.monotonic() - t0
        collector.stop()
        unplayed = control.pending_faults()
        control.drop_faults()
        # The reset emptied the log; reconciliation's own calls (a replayed Create Refund may
        # be the first to reach Amazon) are read from the fresh one.
        settling = LogCollector(control)
        settling.start()
        control.advance_clock(CLOCK_ADVANCE_SECONDS)
        started = time.monotonic()
        passes = reconcile(deployment, control)
        settling.stop()
        log = collector.entries + settling.entries
        reconcile_seconds = time.monotonic() - started
        (out / "reconcile.txt").write_text("\n".join(passes) + "\n")
        facts["buyers"] = f"{args.buyers} for {buying:.0f} s (seed {args.seed}), " + (
            "all from 127.0.0.1" if args.one_address else "each person from their own address"
        )
        facts["journeys"] = str(len(recorder.journeys))
        facts["faults scripted but never reached"] = str(len(unplayed))
        facts["reconcile"] = (
            f"{len(passes)} passes in {time.monotonic() - started:.1f} s, "
            f"simulator clock +{CLOCK_ADVANCE_SECONDS} s; first: {passes[0]}; last: {passes[-1]}"
        )

        button_sessions = {
            str(e["checkout_session_id"])
            for e in collector.entries
            if e.get("operation") == "ButtonCheckout" and e.get("status") == 303
        }
        ours = {j.checkout_session_id for j in recorder.journeys if j.checkout_session_id}
        sessions = read_sessions(
            deployment.simulator.base_url, deployment.keys, sorted(button_sessions | ours)
        )
        tables = read_tables(deployment.database_url)
        objects = read_objects(
            deployment.simulator.base_url,
            deployment.keys,
            sorted({r["charge_id"] for r in tables.operations if r["charge_id"]}),
            sorted({r["refund_id"] for r in tables.refunds if r["refund_id"]}),
        )
        checks, counts = check_all(
            sessions=sessions,
            objects=objects,
            log=log,
            staff=staff_log,
            button_sessions=button_sessions,
            tables=tables,
            recorder=recorder,
            kills=kills,
            log_gaps=collector.gaps + settling.gaps,
        )
        table = build_table(
            recorder=recorder,
            sessions=sessions,
            tables=tables,
            log=log,
            checks=checks,
            counts=counts,
            facts=facts,
            staff=staff_log,
        )
        plot_latency(recorder, t0, kills, victim.restarts, out / LATENCY_PLOT)
        plot_faults(recorder, out / FAULT_PLOT)
        write_summary(
            out / "summary.json",
            checks,
            counts,
            recorder,
            extra={"reconcile_seconds": reconcile_seconds, "reconcile_passes": len(passes)},
        )
        (out / "table.txt").write_text(table + "\n")
        print(table)
        # The servers' logs go with the report: a failed check is investigated from them.
        shutil.copytree(deployment.log_dir, out / "logs", dirs_exist_ok=True)
        print(f"plots, summary.json, table.txt and the servers' logs are in {out}")
        return 0 if all(check.passed for check in checks) else 1


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
