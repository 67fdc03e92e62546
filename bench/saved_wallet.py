"""Paying with a saved wallet: Amazon round trips, app CPU and own overhead per happy charge.

    python bench/saved_wallet.py [--charges 40]

Setup, all in this process: the simulator on a real port (its keep-alive server, a thread per
connection) behind a timing middleware, and the app from `create_app` with credentials pointed
at it and a fresh SQLite database, driven through Flask's test client (so no HTTP server of the
shop's is measured: gunicorn's parsing is in bench/return_flow.py's figures). One buyer saves
Amazon Pay once; then each charge is: add a product, GET /checkout (renders the "Pay with"
form), and the measured POST /checkout/saved, answered 303 to the result page.

Per figure:
  round trips     API requests the simulator received during the POST. Fresh: the wallet's
                  state was confirmed by the previous charge (within FRESH_FOR, five minutes).
                  Stale: the state's confirmation time is cleared before the POST, so the charge
                  asks Get Charge Permission first (storefront/wallet_state.py).
  CPU per charge  thread CPU time (`time.thread_time`) of the bench thread across the POST. The
                  test client runs the whole app in this thread; the simulator runs in its own
                  threads and is not counted. Includes the test client's WSGI call (tens of us).
  own overhead    wall time of the POST minus the time spent inside the simulator's WSGI app
                  for that POST's requests: the app's work plus the loopback network stack.
                  Unloaded: one charge at a time.
CPU and overhead are printed in ms and as a multiple of one RSA-2048 PSS signature measured in
the same run (bench/units.py). Targets (issue 9): 1 round trip fresh, 2 stale, CPU per charge
at most 8 signatures.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amazonpay.simulator import Simulator
from amazonpay.simulator.server import make_keepalive_server
from app import create_app
from bench.units import (
    format_figure,
    format_table,
    measure_signature,
    verdict,
)
from tests.support.servers import APP_VARIABLES, generate_key_pair

CONFIG = re.compile(r'<script type="application/json" id="amazon-pay-button-config">(.*?)</script>')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAY_FORM = re.compile(
    r'action="/checkout/saved".*?name="ref" value="([^"]+)".*?'
    r'name="charge_permission_id" value="([^"]+)"',
    re.S,
)
TARGET_CPU_SIGS = 8.0


class TimedSimulator:
    """WSGI middleware: how long each API request spent inside the simulator."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.records: list[tuple[str, float]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        body = list(self.app(environ, start_response))  # the whole answer, as the server sends it
        path = str(environ.get("PATH_INFO", ""))
        if "/_simulator/" not in path and "/v2/" in path:
            with self.lock:
                self.records.append((path, time.perf_counter() - started))
        return body

    def take(self) -> list[tuple[str, float]]:
        with self.lock:
            taken, self.records = self.records, []
        return taken


def save_wallet(client: Any, simulator_url: str) -> str:
    """The buyer saves Amazon Pay on /wallet (button form, hosted page, return)."""
    page = client.get("/wallet").get_data(as_text=True)
    found = CONFIG.search(page)
    assert found is not None
    config = json.loads(found.group(1))
    session_config = config["createCheckoutSessionConfig"]
    started = requests.post(
        f"{simulator_url}/checkout/start",
        data={
            "payloadJSON": session_config["payloadJSON"],
            "signature": session_config["signature"],
            "publicKeyId": session_config["publicKeyId"],
            "algorithm": session_config["algorithm"],
            "merchantId": config["merchantId"],
            "sandbox": "true",
        },
        allow_redirects=False,
        timeout=10,
    )
    session_id = started.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    chosen = requests.post(
        f"{simulator_url}/hosted/{session_id}/choose",
        data={"method": "1111"},
        allow_redirects=False,
        timeout=10,
    )
    back = chosen.headers["Location"].split("/checkout/return", 1)[1]
    answer = client.get(f"/checkout/return{back}")
    assert answer.status_code == 303, answer.status_code
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    found_id = re.search(r'data-testid="charge-permission-id">([^<]+)<', page)
    assert found_id is not None
    return found_id.group(1)


def charges(
    app: Any, client: Any, timed: TimedSimulator, count: int, *, stale: bool
) -> Iterator[tuple[int, float, float]]:
    """(round trips, CPU seconds, own overhead seconds) of `count` charges."""
    store = app.extensions["shop"].store
    for _ in range(count):
        index = client.get("/").get_data(as_text=True)
        csrf_found = CSRF.search(index)
        assert csrf_found is not None
        csrf = csrf_found.group(1)
        client.post("/cart/add", data={"product_id": "mug", "csrf_token": csrf})
        page = client.get("/checkout").get_data(as_text=True)
        form = PAY_FORM.search(page)
        assert form is not None, "no Pay with form"
        ref, permission_id = form.groups()
        if stale:
            with store.engine.begin() as conn:
                store.wallets.mark_stale(conn, permission_id)
        timed.take()
        cpu_before, wall_before = time.thread_time(), time.perf_counter()
        answer = client.post(
            "/checkout/saved",
            data={"csrf_token": csrf, "ref": ref, "charge_permission_id": permission_id},
        )
        wall = time.perf_counter() - wall_before
        cpu = time.thread_time() - cpu_before
        assert answer.status_code == 303, answer.status_code
        assert answer.headers["Location"] == f"/checkout/result/{ref}"
        inside = timed.take()
        yield len(inside), cpu, wall - sum(seconds for _, seconds in inside)
        client.post("/cart/clear", data={"csrf_token": csrf})


@contextmanager
def shop_with_a_saved_wallet() -> Iterator[tuple[Any, Any, TimedSimulator]]:
    """The app (credentials mode, SQLite) against a timed in-process simulator, with one buyer's
    wallet saved and no monthly limit in the way: (app, that buyer's test client, the timer)."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        keys = generate_key_pair(work / "keys")
        simulator = Simulator(public_keys={keys.key_id: keys.public_key_path.read_bytes()})
        timed = TimedSimulator(simulator.wsgi_app)
        server = make_keepalive_server("127.0.0.1", 0, timed)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        simulator_url = f"http://127.0.0.1:{server.server_address[1]}"
        config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
        config.update(
            {
                "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
                "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
                "AMAZON_PAY_ENDPOINT": simulator_url,
                "AMAZON_PAY_CHECKOUT_JS_URL": f"{simulator_url}/checkout.js",
                "DATABASE_URL": f"sqlite:///{work / 'shop.db'}",
                "SECRET_KEY": "bench-secret-key-0123456789abcdef",
                "PUBLIC_URL": "http://localhost",
                "INSTANCE_PATH": str(work / "instance"),
            }
        )
        app = create_app(config)
        client = app.test_client()
        permission_id = save_wallet(client, simulator_url)
        # The simulator's monthly limit per wallet (2,000 USD) would stop a long run.
        requests.post(
            f"{simulator_url}/_simulator/charge-permissions/{permission_id}/monthly-limit",
            json={"amount": "1000000.00", "currencyCode": "USD"},
            timeout=10,
        ).raise_for_status()
        try:
            yield app, client, timed
        finally:
            app.extensions["shop"].close()
            server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--charges", type=int, default=40, help="charges per phase")
    args = parser.parse_args(argv)

    with shop_with_a_saved_wallet() as (app, client, timed):
        list(charges(app, client, timed, 5, stale=False))  # warm-up: pools, caches
        reference = measure_signature()
        fresh = list(charges(app, client, timed, args.charges, stale=False))
        stale = list(charges(app, client, timed, args.charges, stale=True))
        reference = reference.merged(measure_signature())

    sig = reference.seconds
    rows = []
    for name, results, target_trips in (("fresh", fresh, 1), ("stale", stale, 2)):
        trips = sorted({r[0] for r in results})
        cpu = statistics.median(r[1] for r in results)
        overhead = statistics.median(r[2] for r in results)
        rows.append(
            (
                f"Amazon round trips per happy charge ({name})",
                ", ".join(str(t) for t in trips),
                str(target_trips),
                verdict(trips == [target_trips]),
            )
        )
        rows.append(
            (
                f"app CPU per charge ({name}, median)",
                format_figure(cpu, sig),
                f"<= {TARGET_CPU_SIGS:.0f} sig",
                verdict(cpu / sig <= TARGET_CPU_SIGS),
            )
        )
        rows.append(
            (
                f"own overhead p50, unloaded ({name})",
                format_figure(overhead, sig),
                "",
                "",
            )
        )
    rows.append(reference.row())
    print(f"saved-wallet charges: {args.charges} fresh + {args.charges} stale, SQLite")
    print(format_table(rows))
    return 0 if all(row[3] != "NO" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
