"""Buyers through `/checkout/return` with the app under gunicorn, against the simulator.

    python bench/return_flow.py [--buyers 200] [--threads 4] [--latency-ms 0] [--clients 8]

Setup: the standalone simulator runs in its own process, wrapped in a timing WSGI middleware
(optionally sleeping `--latency-ms` before every API call, to play a distant Amazon). The app
runs as `gunicorn 'app:create_app()' --workers 1 --threads N` with credentials pointed at it
and a SQLite database (or `--database-url`). Every buyer is prepared first over HTTP (cart,
/checkout, button form at the simulator, "success" on the hosted page), so only the return
itself is measured.

Phases: warm-up (the first returns, `--threads` at a time, so every worker thread has opened its
pooled connection), unloaded (one return at a time), loaded (`--clients` returns at a time).

Method, per figure:
  API calls       simulator API requests whose start falls inside the return's window
                  (unloaded phase); "sequential" = no two of them overlap in time. Cross-checked
                  with the simulator's own request log (operations per checkout session id).
  CPU per return  run time of every thread of the gunicorn master and worker, from
                  /proc/<pid>/task/<tid>/schedstat (nanoseconds; user+sys) before and after the
                  phase, divided by the returns. The user/sys split comes from the utime/stime
                  ticks of /proc/<pid>/stat.
  own overhead    client-side latency of GET /checkout/return (keep-alive connection, redirect
                  not followed) minus the time the simulator spent inside its WSGI app for the
                  requests of that return (measured in the simulator process around the app call,
                  including the injected latency). What remains is the app: HTTP parsing in
                  gunicorn, Flask, the database, signing, the client's HTTP round trips
                  (loopback + the simulator server's own HTTP parsing, which is not inside the
                  WSGI timing) and rendering the 303.
  connections     distinct client ports seen by the simulator (REMOTE_PORT) per phase = TCP
                  connections the app opened to the API; plus connections ESTABLISHED from the
                  gunicorn processes to the simulator port at the end (/proc/net/tcp + socket
                  inodes of /proc/<pid>/fd).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.buyer import AmazonReturn, HttpBuyer, simulator_requests  # noqa: E402
from tests.support.servers import (  # noqa: E402
    ServerProcess,
    app_environment,
    generate_key_pair,
    start_gunicorn,
    start_server,
)

API_PREFIXES = ("/v2/", "/sandbox/v2/", "/live/v2/")
TIMINGS_PATH = "/_bench/timings"

# ----------------------------------------------------------------------------- simulator side


class TimingMiddleware:
    """Records (wall start, seconds inside the app, method, path, client port) of API calls."""

    def __init__(self, app: Callable[..., Iterable[bytes]], latency_s: float) -> None:
        self.app = app
        self.latency_s = latency_s
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == TIMINGS_PATH:
            with self.lock:
                records, self.records = self.records, []
            body = json.dumps(records).encode()
            start_response("200 OK", [("content-type", "application/json")])
            return [body]
        if not path.startswith(API_PREFIXES):
            return self.app(environ, start_response)
        wall = time.time()
        started = time.perf_counter()
        if self.latency_s:
            time.sleep(self.latency_s)
        body = b"".join(self.app(environ, start_response))
        record = {
            "wall": wall,
            "seconds": time.perf_counter() - started,
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "port": environ.get("REMOTE_PORT"),
        }
        with self.lock:
            self.records.append(record)
        return [body]


def simulator_app() -> TimingMiddleware:
    """gunicorn entry point (`return_flow:simulator_app()`), configured by BENCH_* variables.

    The simulator is served by gunicorn rather than its own werkzeug runner because werkzeug's
    development server closes the connection after every response; Amazon keeps connections
    alive, and the app's pooled client can only show its pooling against a server that does too.
    """
    from amazonpay.simulator import Simulator

    key_id = os.environ["BENCH_KEY_ID"]
    public_key = Path(os.environ["BENCH_PUBLIC_KEY"]).read_bytes()
    simulator = Simulator(public_keys={key_id: public_key})
    simulator.base_url = os.environ.get("BENCH_SIMULATOR_URL")
    return TimingMiddleware(simulator.wsgi_app, float(os.environ["BENCH_LATENCY_MS"]) / 1000)


# ----------------------------------------------------------------------------- app side


def process_cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of `pids`, all their threads included."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / ticks, system / ticks


def process_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of `pids` (every thread) from schedstat: nanosecond run time, not ticks."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def established_connections(pids: list[int], remote_port: int) -> int:
    """ESTABLISHED TCP connections owned by `pids` whose remote port is `remote_port`."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                count += inode in inodes
    return count


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Phase:
    name: str
    returns: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_system_share: float = 0.0  # of the tick-based user+sys split
    latencies: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)
    sim_records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


_local = threading.local()


def keepalive_session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def do_return(amazon_return: AmazonReturn) -> tuple[float, float, float, str | None]:
    http = keepalive_session()
    wall = time.time()
    started = time.perf_counter()
    response = http.get(amazon_return.return_url, allow_redirects=False, timeout=60)
    latency = time.perf_counter() - started
    location = response.headers.get("Location", "")
    ok = response.status_code in (302, 303) and "/checkout/result/" in location
    problem = None if ok else f"{response.status_code} {location or response.text[:100]}"
    return wall, wall + latency, latency, problem


def run_phase(
    name: str,
    returns: list[AmazonReturn],
    clients: int,
    app: ServerProcess,
    simulator_url: str,
) -> Phase:
    phase = Phase(name)
    requests.get(simulator_url + TIMINGS_PATH, timeout=10)  # discard earlier records
    pids = app.pids()
    user_before, system_before = process_cpu_times(pids)
    cpu_before = process_cpu_seconds(pids)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(do_return, returns))
    phase.seconds = time.perf_counter() - started
    user_after, system_after = process_cpu_times(pids)
    phase.cpu_seconds = process_cpu_seconds(pids) - cpu_before
    ticks_total = (user_after - user_before) + (system_after - system_before)
    phase.cpu_system_share = (system_after - system_before) / ticks_total if ticks_total else 0.0
    phase.returns = len(returns)
    for wall_start, wall_end, latency, problem in results:
        phase.latencies.append(latency)
        phase.windows.append((wall_start, wall_end))
        if problem:
            phase.failures.append(problem)
    phase.sim_records = requests.get(simulator_url + TIMINGS_PATH, timeout=10).json()
    return phase


def prepare_buyers(shop_url: str, simulator_url: str, count: int) -> list[AmazonReturn]:
    def one(_: int) -> AmazonReturn:
        buyer = HttpBuyer(shop_url, simulator_url)
        try:
            return buyer.checkout("success")
        finally:
            buyer.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


@dataclass
class Unloaded:
    calls: list[int]
    sequential: bool
    overheads: list[float]


def attribute(phase: Phase) -> Unloaded:
    """Assign simulator requests to the (non-overlapping) return windows of a sequential phase."""
    records = sorted(phase.sim_records, key=lambda r: r["wall"])
    calls: list[int] = []
    overheads: list[float] = []
    sequential = True
    slack = 0.002  # the two processes read the same wall clock; allow for scheduling jitter
    for (start, end), latency in zip(phase.windows, phase.latencies, strict=True):
        inside = [r for r in records if start - slack <= r["wall"] <= end + slack]
        calls.append(len(inside))
        for first, second in itertools.pairwise(inside):
            if second["wall"] < first["wall"] + first["seconds"] - slack:
                sequential = False
        overheads.append(latency - sum(r["seconds"] for r in inside))
    return Unloaded(calls=calls, sequential=sequential, overheads=overheads)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (1 worker)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent buyers when loaded")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added per API call")
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-return-flow-"))
    keys = generate_key_pair(work / "keys")
    simulator = start_server(
        "simulator",
        argv_template=[
            sys.executable,
            "-m",
            "gunicorn",
            "return_flow:simulator_app()",
            "--pythonpath",
            f"{ROOT},{ROOT / 'bench'}",
            "--bind",
            "127.0.0.1:{port}",
            "--workers",
            "1",  # the simulator keeps its state in memory
            "--threads",
            "32",
            "--keep-alive",
            "75",
            "--no-control-socket",
        ],
        env={
            **os.environ,
            "BENCH_KEY_ID": keys.key_id,
            "BENCH_PUBLIC_KEY": str(keys.public_key_path),
            "BENCH_LATENCY_MS": str(args.latency_ms),
        },
        log_dir=work / "logs",
        health_path="/_simulator/health",
    )
    database_url = args.database_url or f"sqlite:///{work / 'shop.sqlite3'}"
    app = start_gunicorn(
        env=app_environment(keys=keys, simulator_url=simulator.base_url, database_url=database_url),
        log_dir=work / "logs",
        name="app",
        workers=1,
        threads=args.threads,
    )
    try:
        return run(args, app, simulator, database_url)
    finally:
        app.stop()
        simulator.stop()


def run(
    args: argparse.Namespace, app: ServerProcess, simulator: ServerProcess, database_url: str
) -> int:
    print(f"preparing {args.buyers} buyers (cart, /checkout, Amazon button, hosted page) ...")
    buyers = prepare_buyers(app.base_url, simulator.base_url, args.buyers)
    warm_count = max(args.threads * 2, args.buyers // 10)
    rest = buyers[warm_count:]
    unloaded_count = len(rest) // 2
    warm = run_phase("warm-up", buyers[:warm_count], args.threads, app, simulator.base_url)
    unloaded = run_phase("unloaded", rest[:unloaded_count], 1, app, simulator.base_url)
    loaded = run_phase("loaded", rest[unloaded_count:], args.clients, app, simulator.base_url)
    established = established_connections(app.pids(), simulator.port)

    failures = warm.failures + unloaded.failures + loaded.failures
    sequential_view = attribute(unloaded)
    log = simulator_requests(simulator.base_url)
    per_session: dict[str, list[str]] = {}
    for entry in log:
        if entry["operation"] in ("GetCheckoutSession", "CompleteCheckoutSession"):
            per_session.setdefault(entry["checkout_session_id"], []).append(entry["operation"])
    measured = [b.checkout_session_id for b in rest]
    gets = statistics.mean(per_session.get(s, []).count("GetCheckoutSession") for s in measured)
    completes = statistics.mean(
        per_session.get(s, []).count("CompleteCheckoutSession") for s in measured
    )
    other_ops = sorted(
        {
            e["operation"]
            for e in log
            if e["checkout_session_id"] in set(measured)
            and e["operation"]
            not in (
                "GetCheckoutSession",
                "CompleteCheckoutSession",
                "ButtonCheckout",
                "BuyerChoice",
            )
        }
    )
    ports = {
        name: {r["port"] for r in p.sim_records}
        for name, p in (("warm-up", warm), ("unloaded", unloaded), ("loaded", loaded))
    }
    new_after_warmup = (ports["unloaded"] | ports["loaded"]) - ports["warm-up"]

    calls = sequential_view.calls
    overheads = sequential_view.overheads
    cpu_unloaded = unloaded.cpu_seconds / unloaded.returns
    cpu_loaded = loaded.cpu_seconds / loaded.returns
    rows: list[tuple[str, str, str, str]] = [
        (
            "API calls per happy return",
            f"{statistics.mean(calls):.2f} (min {min(calls)}, max {max(calls)}; "
            f"log: Get {gets:.2f} + Complete {completes:.2f}"
            + (f"; other {','.join(other_ops)}" if other_ops else "")
            + ")",
            "<= 2",
            ok(max(calls) <= 2 and gets + completes <= 2),
        ),
        (
            "  ... made sequentially",
            "yes" if sequential_view.sequential else "NO (overlap)",
            "",
            "",
        ),
        (
            "app CPU per return, unloaded",
            f"{ms(cpu_unloaded)} ({unloaded.cpu_system_share:.0%} sys)",
            "<= 4 ms",
            ok(cpu_unloaded <= 0.004),
        ),
        (
            "app CPU per return, loaded",
            f"{ms(cpu_loaded)} ({loaded.cpu_system_share:.0%} sys)",
            "<= 4 ms",
            ok(cpu_loaded <= 0.004),
        ),
        (
            "own overhead p50 (unloaded)",
            ms(statistics.median(overheads)),
            "<= 4 ms",
            ok(statistics.median(overheads) <= 0.004),
        ),
        ("own overhead p99 (unloaded)", ms(percentile(overheads, 0.99)), "", ""),
        (
            "return latency p50 / p99 (unloaded)",
            f"{ms(statistics.median(unloaded.latencies))} / "
            f"{ms(percentile(unloaded.latencies, 0.99))}",
            "",
            "",
        ),
        (
            "time inside simulator per return (p50)",
            ms(
                statistics.median(
                    lat - ov for lat, ov in zip(unloaded.latencies, overheads, strict=True)
                )
            ),
            "",
            "",
        ),
        (
            f"returns/s (loaded, {args.clients} clients)",
            f"{loaded.returns / loaded.seconds:.1f}",
            "",
            "",
        ),
        (
            "return latency p50 / p99 (loaded)",
            f"{ms(statistics.median(loaded.latencies))} / {ms(percentile(loaded.latencies, 0.99))}",
            "",
            "",
        ),
        (
            "TCP connections app -> API",
            f"warm-up {len(ports['warm-up'])}, new after warm-up {len(new_after_warmup)}, "
            f"established at end {established}",
            f"<= {args.threads}, 0 new",
            ok(
                len(ports["warm-up"] | ports["unloaded"] | ports["loaded"]) <= args.threads
                and not new_after_warmup
            ),
        ),
        ("failed returns", str(len(failures)), "0", ok(not failures)),
    ]
    db = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    print()
    print(
        f"return flow: {args.buyers} buyers (warm-up {warm.returns}, unloaded {unloaded.returns},"
        f" loaded {loaded.returns}); gunicorn 1 worker x {args.threads} threads; {db};"
        f" simulator latency {args.latency_ms:g} ms per API call"
    )
    widths = [
        max(len(r[i]) for r in [("metric", "value", "target", "ok"), *rows]) for i in range(4)
    ]
    header = ("metric", "value", "target", "ok")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    if failures:
        print("failures:", failures[:5])
    return 0 if not failures else 1


def ok(condition: bool) -> str:
    return "yes" if condition else "NO"


if __name__ == "__main__":
    sys.exit(main())
