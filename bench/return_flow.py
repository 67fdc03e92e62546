"""Buyers through `/checkout/return` with the app under gunicorn, against the simulator.

    python bench/return_flow.py [--buyers 200] [--threads 4] [--latency-ms 0] [--clients 8]
                                [--worker-class gthread|sync] [--compare-workers] [--quick]

`--quick` is a smoke run (60 buyers, a shorter loopback floor): about ten seconds.

Setup: the standalone simulator runs in its own process (`return_flow.py serve-simulator`),
served by its own `KeepAliveWSGIServer` from amazonpay/simulator/server.py - threaded, HTTP/1.1
keep-alive, like Amazon - with a timing hook in the request handler (optionally sleeping
`--latency-ms` before every API call, to play a distant Amazon). The app runs as
`gunicorn 'app:create_app()' --workers 1 --worker-class gthread --threads N` (default) or
`--worker-class sync` (1 worker, 1 thread; `--compare-workers` runs both, each against a fresh
simulator and database) with credentials pointed at the simulator and a SQLite database (or
`--database-url`). Every buyer is prepared first over HTTP (cart, /checkout, button form at the
simulator, "success" on the hosted page), so only the return itself is measured.

Phases: warm-up (the first returns, one per worker thread at a time, so every worker thread has
opened its pooled connection), unloaded (one return at a time), loaded (`--clients` at a time).
Then the loopback floor is measured with the app idle.

Method, per figure:
  time inside the simulator, per API request
                  measured in the simulator process by a handler subclass of
                  `KeepAliveRequestHandler`: from the moment the request line has been read off
                  the socket (`parse_request` is entered) to the moment `handle_one_request`
                  returns, i.e. the response has been handed to the kernel (`sendall`). It covers
                  the simulator server's own HTTP parsing, the WSGI app (signature check, state,
                  the injected latency) and the response serialisation and write. Not in it:
                  the kernel and the loopback device, and the wake-up of the simulator's
                  connection thread - that is the network stack, shown by the loopback floor.
  API calls       every API request the simulator received (records of the hook above),
                  attributed to a return by the checkout session id in its path
                  (/v2/checkoutSessions/<id>[/complete]); exact, no time windows. Counted for
                  every return of every phase; API requests carrying no measured session id are
                  reported as "unattributed". Cross-checked with the simulator's own request log
                  (operations per `checkout_session_id`). "Sequential" = for each return, no
                  request was read (server side) before the previous one of the same return
                  began to get its response (`send_response`; before that the client cannot
                  have had it); both timestamps come from one clock in one process. A request
                  read after that but before the previous response's end stamp is shown as a
                  "GIL hand-off": it came on another connection and its server thread ran
                  before the writing thread got the GIL back to take its stamp.
  CPU per return  run time of every thread of the gunicorn master and worker, from
                  /proc/<pid>/task/<tid>/schedstat (nanoseconds; user+sys) before and after the
                  phase, divided by the returns. The user/sys split comes from the utime/stime
                  ticks of /proc/<pid>/stat.
  own overhead    client-side latency of GET /checkout/return minus the time inside the
                  simulator of that return's API requests (above). The bench sends the return
                  like a browser back from Amazon - with the buyer's own shop session cookie -
                  over a minimal keep-alive raw-socket client, redirect not followed, so no
                  client library time of the bench's is counted (requests.Session would add
                  about 0.5 ms; see the loopback floor). What remains is ours: gunicorn's HTTP
                  parsing, Flask, the session cookie, the database, signing, our HTTP client,
                  rendering the 303 - plus the network stack of the bench's request to the app
                  and of the app's API calls. The sync worker does not keep client connections
                  alive, so there it also includes a TCP connect.
  stack floor     the app's CPU (schedstat, as above) per `GET /checkout/return` without
                  parameters, one at a time after the phases: refused before any database or
                  API call, it is what any request costs here (gunicorn, Flask, guards, headers,
                  the session cookie, metrics, the log line). App CPU per return minus this is
                  the return's own work: the database, the two signed calls, the use case.
  loopback floor  an empty `GET /_bench/ping` (200, no body) to the simulator over one kept-alive
                  connection, 300 times after 50 unmeasured: raw socket (no client library),
                  and requests.Session (the library our client uses). "Network stack" = raw
                  round trip minus the simulator server's own time for the ping (same hook),
                  paired per request. Per return the app makes its API calls plus answers the
                  bench, so about (calls + 1) x the network stack is loopback, not our code.
  connections     distinct client ports seen by the simulator per phase = TCP connections the
                  app opened to the API; plus connections ESTABLISHED from the gunicorn processes
                  to the simulator port at the end (/proc/net/tcp + socket inodes of
                  /proc/<pid>/fd). Target: one per worker thread (gthread: --threads; sync: 1).
  sig             every time figure is also given as a multiple of one RSA-2048 PSS-SHA256
                  signature (bench/units.py): thread CPU time in the bench process, cyclic GC
                  off, median of batches measured before the servers start and again after the
                  phases, so figures compare across machines of different speed. The CPU and
                  overhead targets are set in sig and `ok` judges the sig figure, so the code
                  meets them or not, whatever the machine. On a shared virtual machine the
                  reference moves too - its batches' range is in the last row - and the app's
                  CPU and the simulator's per-call time move by tens of percent between runs
                  (each run starts fresh processes): judge the targets on several runs, not one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
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
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.units import (  # noqa: E402
    SignatureReference,
    format_sig,
    format_table,
    measure_signature,
    verdict,
)
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
PING_PATH = "/_bench/ping"
RETURN_PATH = "/checkout/return"
SESSION_IN_PATH = re.compile(r"/checkoutSessions/([A-Za-z0-9_-]+)")
WORKER_CLASSES = ("gthread", "sync")
SHOP_COOKIE = "shop_session"  # app.py: SESSION_COOKIE_NAME
# Targets per happy return, in signatures so they hold on any machine: the app's CPU (master and
# worker, every thread) and its own overhead at p50 with one buyer at a time.
CPU_TARGET_SIG = 10.0
OVERHEAD_TARGET_SIG = 10.0

# ----------------------------------------------------------------------------- simulator side


def _timed_handler_class() -> type[Any]:
    from amazonpay.simulator.server import KeepAliveRequestHandler

    class TimedRequestHandler(KeepAliveRequestHandler):
        """Times each request from its parsed request line to its written response."""

        _bench_started: float | None = None
        _bench_responding: float | None = None

        def handle_one_request(self) -> None:
            self._bench_started = self._bench_responding = None
            super().handle_one_request()
            started: float | None = getattr(self, "_bench_started", None)  # set by parse_request
            if started is not None:
                ended = time.perf_counter()
                target = getattr(self, "path", "")  # unset if the request line was malformed
                responding = getattr(self, "_bench_responding", None) or ended
                self.server.bench_record(  # type: ignore[attr-defined]
                    target, self.client_address[1], started, responding, ended
                )

        def send_response(self, code: int, message: str | None = None) -> None:
            if getattr(self, "_bench_responding", None) is None:
                self._bench_responding = time.perf_counter()  # before any byte is written
            super().send_response(code, message)

        def parse_request(self) -> bool:
            self._bench_started = time.perf_counter()
            return bool(super().parse_request())

    return TimedRequestHandler


class BenchSimulatorApp:
    """The simulator's WSGI app plus /_bench/timings, /_bench/ping and the injected latency."""

    def __init__(self, app: Callable[..., Iterable[bytes]], latency_s: float) -> None:
        self.app = app
        self.latency_s = latency_s
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def record(
        self, target: str, port: int, started: float, responding: float, ended: float
    ) -> None:
        path = target.split("?", 1)[0]
        if path.startswith(API_PREFIXES):
            kind = "api"
        elif path == PING_PATH:
            kind = "ping"
        else:
            return
        found = SESSION_IN_PATH.search(path)
        entry = {
            "kind": kind,
            "path": path,
            "session": found.group(1) if found else None,
            "port": port,
            "start": started,
            "responding": responding,
            "end": ended,
            "seconds": ended - started,
        }
        with self.lock:
            self.records.append(entry)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == TIMINGS_PATH:
            with self.lock:
                records, self.records = self.records, []
            body = json.dumps(records).encode()
            start_response(
                "200 OK",
                [("content-type", "application/json"), ("content-length", str(len(body)))],
            )
            return [body]
        if path == PING_PATH:
            start_response("200 OK", [("content-length", "0")])
            return []
        if self.latency_s and path.startswith(API_PREFIXES):
            time.sleep(self.latency_s)
        return self.app(environ, start_response)


def serve_simulator(argv: list[str]) -> int:
    """`return_flow.py serve-simulator --port P --key-id ID --public-key PEM [--latency-ms X]`."""
    from amazonpay.simulator import Simulator
    from amazonpay.simulator.server import KeepAliveWSGIServer

    parser = argparse.ArgumentParser(prog="return_flow.py serve-simulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--public-key", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    simulator = Simulator(public_keys={args.key_id: args.public_key.read_bytes()})
    simulator.base_url = f"http://127.0.0.1:{args.port}"
    app = BenchSimulatorApp(simulator.wsgi_app, args.latency_ms / 1000)
    server = KeepAliveWSGIServer("127.0.0.1", args.port, app)
    # The server hard-wires its handler class; the timing subclass changes no behaviour.
    server.RequestHandlerClass = _timed_handler_class()
    server.bench_record = app.record  # type: ignore[attr-defined]
    server.serve_forever(poll_interval=0.5)
    return 0


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


def fetch_timings(simulator_url: str) -> list[dict[str, Any]]:
    """The simulator's timing records since the last fetch (fetching clears them)."""
    response = requests.get(simulator_url + TIMINGS_PATH, timeout=10)
    response.raise_for_status()
    records: list[dict[str, Any]] = response.json()
    return records


@dataclass
class ReturnResult:
    session: str
    latency: float
    problem: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)  # its API requests, by start

    @property
    def inside_simulator(self) -> float:
        return float(sum(r["seconds"] for r in self.calls))

    @property
    def sequential(self) -> bool:
        """No request arrived before the previous one's response began to be written."""
        return all(
            later["start"] >= earlier["responding"]
            for earlier, later in zip(self.calls, self.calls[1:], strict=False)
        )

    @property
    def handoffs(self) -> int:
        """Requests read while the previous response was being written or its end stamped.

        Not an overlap: the client had the response (the next request came on another
        connection, whose server thread ran before the writing thread got the GIL back)."""
        return sum(
            earlier["responding"] <= later["start"] < earlier["end"]
            for earlier, later in zip(self.calls, self.calls[1:], strict=False)
        )

    @property
    def connections(self) -> int:
        return len({r["port"] for r in self.calls})


@dataclass
class Phase:
    name: str
    returns: list[ReturnResult] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_system_share: float = 0.0  # of the tick-based user+sys split
    unattributed: list[dict[str, Any]] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)

    @property
    def latencies(self) -> list[float]:
        return [r.latency for r in self.returns]

    @property
    def failures(self) -> list[str]:
        return [r.problem for r in self.returns if r.problem]


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive GET client on a raw socket, one per bench thread.

    The return's latency is the app's, not the bench client's: requests.Session would add
    about half a millisecond of client-side library time (see the loopback floor rows). A
    connection the server closed (the sync worker closes after every response; gthread after
    its keep-alive timeout) is reopened, inside the measured time for the former.
    """

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def _read_until(self, sock: socket.socket, marker: bytes) -> int:
        while (index := self.buffer.find(marker)) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the response headers")
            self.buffer += chunk
        return index

    def get(self, target: str, cookie: str = "") -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body); retries once if a reused connection is dead."""
        reused = self.sock is not None
        try:
            return self._get(target, cookie)
        except (ConnectionError, TimeoutError):
            self.close()
            if not reused:
                raise
        return self._get(target, cookie)

    def _get(self, target: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
        sock = self.sock or self._connect()
        host = f"{self.address[0]}:{self.address[1]}"
        cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{cookie_line}\r\n".encode())
        end = self._read_until(sock, b"\r\n\r\n")
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        status_line, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ConnectionError("chunked responses are not supported by the bench client")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed mid-body")
                self.buffer += chunk
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        else:  # the body ends with the connection
            while chunk := sock.recv(65536):
                self.buffer += chunk
            body, self.buffer = self.buffer, b""
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), headers, body


_local = threading.local()


def raw_client(url: str) -> RawHttpClient:
    parts = urlsplit(url)
    key = (parts.hostname, parts.port)
    clients: dict[Any, RawHttpClient] = _local.__dict__.setdefault("clients", {})
    if key not in clients:
        clients[key] = RawHttpClient(parts.hostname or "127.0.0.1", parts.port or 80)
    return clients[key]


@dataclass(frozen=True)
class PreparedBuyer:
    amazon_return: AmazonReturn
    cookie: str  # the buyer's own shop session cookie, which the browser sends on the return

    @property
    def session(self) -> str:
        return self.amazon_return.checkout_session_id


def do_return(buyer: PreparedBuyer) -> ReturnResult:
    amazon_return = buyer.amazon_return
    parts = urlsplit(amazon_return.return_url)
    client = raw_client(amazon_return.return_url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    status, headers, body = client.get(target, buyer.cookie)
    latency = time.perf_counter() - started
    location = headers.get("location", "")
    ok = status in (302, 303) and "/checkout/result/" in location
    problem = None if ok else f"{status} {location or body[:100]!r}"
    return ReturnResult(amazon_return.checkout_session_id, latency, problem)


def run_phase(
    name: str,
    returns: list[PreparedBuyer],
    clients: int,
    app: ServerProcess,
    simulator_url: str,
) -> Phase:
    phase = Phase(name)
    fetch_timings(simulator_url)  # discard earlier records
    pids = app.pids()
    user_before, system_before = process_cpu_times(pids)
    cpu_before = process_cpu_seconds(pids)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        phase.returns = list(pool.map(do_return, returns))
    phase.seconds = time.perf_counter() - started
    user_after, system_after = process_cpu_times(pids)
    phase.cpu_seconds = process_cpu_seconds(pids) - cpu_before
    ticks_total = (user_after - user_before) + (system_after - system_before)
    phase.cpu_system_share = (system_after - system_before) / ticks_total if ticks_total else 0.0
    by_session = {r.session: r for r in phase.returns}
    for record in sorted(fetch_timings(simulator_url), key=lambda r: r["start"]):
        if record["kind"] != "api":
            continue
        phase.ports.add(record["port"])
        owner = by_session.get(record["session"])
        if owner is None:
            phase.unattributed.append(record)
        else:
            owner.calls.append(record)
    return phase


def prepare_buyers(shop_url: str, simulator_url: str, count: int) -> list[PreparedBuyer]:
    def one(_: int) -> PreparedBuyer:
        buyer = HttpBuyer(shop_url, simulator_url)
        try:
            amazon_return = buyer.checkout("success")
            # Shop and simulator share 127.0.0.1 and cookies ignore ports: take the shop's by name.
            cookie = "; ".join(
                f"{c.name}={c.value}" for c in buyer.http.cookies if c.name == SHOP_COOKIE
            )
            return PreparedBuyer(amazon_return, cookie)
        finally:
            buyer.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


# ----------------------------------------------------------------------------- stack floor


def stack_floor_cpu(app: ServerProcess, count: int, warm: int) -> float:
    """App CPU per `GET /checkout/return` without parameters, one at a time: refused before any
    database or API call, it costs what every request costs - gunicorn, Flask, the guards and
    headers, the session cookie (this one writes the failure notice into it), metrics and the
    log line - and nothing of the return's own work."""
    client = RawHttpClient("127.0.0.1", app.port)
    try:
        for _ in range(warm):
            client.get(RETURN_PATH)
        before = process_cpu_seconds(app.pids())
        for _ in range(count):
            status, _headers, _body = client.get(RETURN_PATH)
            if status != 303:
                raise RuntimeError(f"a return without parameters answered {status}, not 303")
        return (process_cpu_seconds(app.pids()) - before) / count
    finally:
        client.close()


# ----------------------------------------------------------------------------- loopback floor


@dataclass
class Floor:
    raw: list[float]  # client round trips over a raw socket
    network: list[float]  # raw round trip minus the simulator server's time, per request
    server: list[float]
    library: list[float]  # round trips through requests.Session


def loopback_floor(simulator: ServerProcess, count: int, warm: int) -> Floor:
    request = f"GET {PING_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{simulator.port}\r\n\r\n".encode()
    raw: list[float] = []
    fetch_timings(simulator.base_url)
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(warm + count):
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:  # Content-Length: 0, so the headers are all of it
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("simulator closed the ping connection")
                data += chunk
            elapsed = time.perf_counter() - started
            if i >= warm:
                raw.append(elapsed)
    server = [r["seconds"] for r in fetch_timings(simulator.base_url) if r["kind"] == "ping"]
    server = server[warm:]
    library: list[float] = []
    with requests.Session() as http:
        for i in range(warm + count):
            started = time.perf_counter()
            http.get(simulator.base_url + PING_PATH, timeout=10)
            if i >= warm:
                library.append(time.perf_counter() - started)
    fetch_timings(simulator.base_url)
    network = [r - s for r, s in zip(raw, server, strict=True)]
    return Floor(raw=raw, network=network, server=server, library=library)


# ----------------------------------------------------------------------------- one configuration


@dataclass
class Report:
    title: str
    rows: list[tuple[str, str, str, str]]
    failures: list[str]


def start_simulator(work: Path, keys: Any, latency_ms: float) -> ServerProcess:
    return start_server(
        "simulator",
        argv_template=[
            sys.executable,
            str(Path(__file__).resolve()),
            "serve-simulator",
            "--port",
            "{port}",
            "--key-id",
            keys.key_id,
            "--public-key",
            str(keys.public_key_path),
            "--latency-ms",
            str(latency_ms),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        log_dir=work / "logs",
        health_path="/_simulator/health",
    )


def run_configuration(
    args: argparse.Namespace, worker_class: str, key: rsa.RSAPrivateKey, start: SignatureReference
) -> Report:
    work = Path(tempfile.mkdtemp(prefix=f"bench-return-flow-{worker_class}-"))
    keys = generate_key_pair(work / "keys")
    threads = args.threads if worker_class == "gthread" else 1
    simulator = start_simulator(work, keys, args.latency_ms)
    database_url = args.database_url or f"sqlite:///{work / 'shop.sqlite3'}"
    try:
        app = start_gunicorn(
            env=app_environment(
                keys=keys, simulator_url=simulator.base_url, database_url=database_url
            ),
            log_dir=work / "logs",
            name="app",
            workers=1,
            threads=threads,
            extra_args=["--worker-class", worker_class],
        )
        try:
            return measure(
                args,
                worker_class=worker_class,
                key=key,
                start=start,
                threads=threads,
                app=app,
                simulator=simulator,
                database_url=database_url,
            )
        finally:
            app.stop()
    finally:
        simulator.stop()


def measure(
    args: argparse.Namespace,
    *,
    worker_class: str,
    key: rsa.RSAPrivateKey,
    start: SignatureReference,
    threads: int,
    app: ServerProcess,
    simulator: ServerProcess,
    database_url: str,
) -> Report:
    print(f"[{worker_class}] preparing {args.buyers} buyers (cart, /checkout, Amazon, hosted page)")
    buyers = prepare_buyers(app.base_url, simulator.base_url, args.buyers)
    with_cookie = sum(bool(b.cookie) for b in buyers)
    warm_count = max(threads * 2, args.buyers // 10)
    rest = buyers[warm_count:]
    unloaded_count = len(rest) // 2
    warm = run_phase("warm-up", buyers[:warm_count], threads, app, simulator.base_url)
    unloaded = run_phase("unloaded", rest[:unloaded_count], 1, app, simulator.base_url)
    loaded = run_phase("loaded", rest[unloaded_count:], args.clients, app, simulator.base_url)
    established = established_connections(app.pids(), simulator.port)
    stack = stack_floor_cpu(app, count=args.floor_count, warm=args.floor_count // 6)
    floor = loopback_floor(simulator, count=args.floor_count, warm=args.floor_count // 6)
    reference = start.merged(measure_signature(key=key))
    fig = reference.figure
    phases = (warm, unloaded, loaded)

    everything = [r for p in phases for r in p.returns]
    calls = [len(r.calls) for r in everything]
    unloaded_calls = [len(r.calls) for r in unloaded.returns]
    overlapping = {p.name: sum(not r.sequential for r in p.returns) for p in phases}
    handoffs = sum(r.handoffs for r in everything)
    split = sum(r.connections > 1 for r in everything)
    unattributed = sum(len(p.unattributed) for p in phases)
    failures = [f for p in phases for f in p.failures]

    log = simulator_requests(simulator.base_url)
    measured = {b.session for b in buyers}
    per_session: dict[str, list[str]] = {}
    for entry in log:
        if entry["checkout_session_id"] in measured:
            per_session.setdefault(entry["checkout_session_id"], []).append(entry["operation"])
    gets = [per_session.get(s, []).count("GetCheckoutSession") for s in measured]
    completes = [per_session.get(s, []).count("CompleteCheckoutSession") for s in measured]
    setup_ops = {"GetCheckoutSession", "CompleteCheckoutSession", "ButtonCheckout", "BuyerChoice"}
    other_ops = sorted({op for ops in per_session.values() for op in ops} - setup_ops)
    log_agrees = all(
        gets_ + completes_ == len(r.calls)
        for r, gets_, completes_ in zip(
            everything,
            (per_session.get(r.session, []).count("GetCheckoutSession") for r in everything),
            (per_session.get(r.session, []).count("CompleteCheckoutSession") for r in everything),
            strict=True,
        )
    )

    overheads = [r.latency - r.inside_simulator for r in unloaded.returns]
    inside = [r.inside_simulator for r in unloaded.returns]
    per_call_inside = [c["seconds"] for r in unloaded.returns for c in r.calls]
    overhead_p50 = statistics.median(overheads)
    network_p50 = statistics.median(floor.network)
    hops = statistics.mean(unloaded_calls) + 1
    cpu_unloaded = unloaded.cpu_seconds / len(unloaded.returns)
    cpu_loaded = loaded.cpu_seconds / len(loaded.returns)
    new_after_warmup = (unloaded.ports | loaded.ports) - warm.ports
    all_ports = warm.ports | unloaded.ports | loaded.ports

    rows: list[tuple[str, str, str, str]] = [
        (
            "API calls per happy return (all phases)",
            f"{statistics.mean(calls):.2f} (min {min(calls)}, max {max(calls)}; "
            f"{len(calls)} returns; unattributed {unattributed})",
            "<= 2",
            verdict(max(calls) <= 2 and unattributed == 0),
        ),
        (
            "  ... simulator log, per session",
            f"Get {statistics.mean(gets):.2f} (max {max(gets)}) + Complete "
            f"{statistics.mean(completes):.2f} (max {max(completes)})"
            + (f"; other {','.join(other_ops)}" if other_ops else "")
            + ("; agrees" if log_agrees else "; DISAGREES with the timing records"),
            "",
            "",
        ),
        (
            "  ... made sequentially",
            "yes" if not any(overlapping.values()) else "NO",
            "",
            "",
        ),
        (
            "      returns with overlapping calls",
            ", ".join(f"{name} {count}" for name, count in overlapping.items())
            + (f" (+{handoffs} GIL hand-off, not overlap)" if handoffs else ""),
            "0",
            verdict(not any(overlapping.values())),
        ),
        (
            "app CPU per return, unloaded",
            f"{fig(cpu_unloaded)}, {unloaded.cpu_system_share:.0%} sys",
            f"<= {format_sig(CPU_TARGET_SIG)}",
            verdict(reference.sigs(cpu_unloaded) <= CPU_TARGET_SIG),
        ),
        (
            "app CPU per return, loaded",
            f"{fig(cpu_loaded)}, {loaded.cpu_system_share:.0%} sys",
            f"<= {format_sig(CPU_TARGET_SIG)}",
            verdict(reference.sigs(cpu_loaded) <= CPU_TARGET_SIG),
        ),
        (
            "  ... the HTTP stack alone (a refused return)",
            f"{fig(stack)}; the rest, {fig(cpu_unloaded - stack)}, is the return's own work:"
            " database, the two signed calls, the use case",
            "",
            "",
        ),
        (
            "own overhead p50 (unloaded)",
            fig(overhead_p50),
            f"<= {format_sig(OVERHEAD_TARGET_SIG)}",
            verdict(reference.sigs(overhead_p50) <= OVERHEAD_TARGET_SIG),
        ),
        ("own overhead p99 (unloaded)", fig(percentile(overheads, 0.99)), "", ""),
        (
            "  ... minus network stack x (calls + 1)",
            fig(overhead_p50 - hops * network_p50),
            "",
            "",
        ),
        (
            "return latency p50 / p99 (unloaded)",
            f"{fig(statistics.median(unloaded.latencies))} / "
            f"{fig(percentile(unloaded.latencies, 0.99))}",
            "",
            "",
        ),
        (
            "inside simulator per return / per call (p50)",
            f"{fig(statistics.median(inside))} / {fig(statistics.median(per_call_inside))}",
            "",
            "",
        ),
        (
            "loopback floor, empty request (p50 / p99)",
            f"raw socket {fig(statistics.median(floor.raw))} / {fig(percentile(floor.raw, 0.99))}"
            f" (server {fig(statistics.median(floor.server))}); "
            f"requests.Session {fig(statistics.median(floor.library))}",
            "",
            "",
        ),
        (
            "  ... network stack per round trip (p50)",
            fig(network_p50),
            "",
            "",
        ),
        (
            f"returns/s (loaded, {args.clients} clients)",
            f"{len(loaded.returns) / loaded.seconds:.1f}",
            "",
            "",
        ),
        (
            "return latency p50 / p99 (loaded)",
            f"{fig(statistics.median(loaded.latencies))} / "
            f"{fig(percentile(loaded.latencies, 0.99))}",
            "",
            "",
        ),
        (
            "TCP connections app -> API",
            f"warm-up {len(warm.ports)}, new after warm-up {len(new_after_warmup)}, "
            f"established at end {established}; returns split over 2 connections {split}",
            f"<= {threads}, 0 new",
            verdict(len(all_ports) <= threads and not new_after_warmup),
        ),
        ("failed returns", str(len(failures)), "0", verdict(not failures)),
        reference.row(),
    ]
    db = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    title = (
        f"return flow: {args.buyers} buyers (warm-up {len(warm.returns)}, unloaded"
        f" {len(unloaded.returns)}, loaded {len(loaded.returns)}); gunicorn 1 worker,"
        f" --worker-class {worker_class} --threads {threads}; {db};"
        f" simulator latency {args.latency_ms:g} ms per API call; {with_cookie} of"
        f" {len(buyers)} returns carry the buyer's session cookie"
    )
    return Report(title=title, rows=rows, failures=failures)


def print_report(report: Report) -> None:
    print()
    print(report.title)
    print(format_table(report.rows))
    if report.failures:
        print("failures:", report.failures[:5])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-simulator"]:
        return serve_simulator(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4, help="gthread threads (1 worker)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent buyers when loaded")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added per API call")
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default="gthread")
    parser.add_argument(
        "--compare-workers", action="store_true", help="run gthread and sync, one after the other"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: --buyers 60 and a shorter loopback floor"
    )
    args = parser.parse_args(argv)
    args.floor_count = 100 if args.quick else 300
    if args.quick:
        args.buyers = 60
    if args.database_url and args.compare_workers:
        parser.error("--compare-workers needs a fresh database per run: omit --database-url")

    classes = WORKER_CLASSES if args.compare_workers else (args.worker_class,)
    # One key and a first measurement before any server runs; each configuration measures again
    # after its phases (see "sig" in the module docstring).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = measure_signature(key=key)
    reports = [run_configuration(args, c, key, start) for c in classes]
    for report in reports:
        print_report(report)
    if len(reports) > 1:
        print()
        print("side by side")
        header = ("metric", *(f"{c} x {args.threads if c == 'gthread' else 1}" for c in classes))
        by_metric = [
            (row[0], *(r.rows[i][1] for r in reports)) for i, row in enumerate(reports[0].rows)
        ]
        print(format_table(by_metric, header=header))
    return 0 if not any(r.failures for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
