"""Per-call cost of AmazonPayClient against the community `AmazonPayClient` package and the floor.

Starts one local HTTP/1.1 keep-alive server on 127.0.0.1 that answers Get and Complete Checkout
Session with fixed JSON (no signature checks), then times N Get + N Complete calls with:
  ours       amazonpay.client.AmazonPayClient (endpoint override to the local server)
  community  PyPI AmazonPayClient (`AmazonPay.Client`); its `endpoint` attribute is overwritten
             after construction, because it hard-codes https://pay-api.amazon.* hosts
  floor      one RSA-PSS signature with a key parsed once + one request on a pooled Session
CPU time is the calling thread's (time.thread_time), so the server threads are not counted.
Every time figure is printed in ms and in `sig`, one RSA-2048 PSS-SHA256 signature measured in
this run (bench/units.py), before and after the calls.

    python bench/client_bench.py [--n 300] [--warmup 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amazonpay import signing
from amazonpay.client import AmazonPayClient
from amazonpay.models import Price
from bench.units import SignatureReference, format_table, measure_signature, verdict

SESSION_ID = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc"
SESSION_JSON = json.dumps(
    {
        "checkoutSessionId": SESSION_ID,
        "statusDetails": {"state": "Open", "lastUpdatedTimestamp": "20261129T100000Z"},
        "chargePermissionType": "OneTime",
        "paymentDetails": {
            "paymentIntent": "Authorize",
            "chargeAmount": {"amount": "12.50", "currencyCode": "USD"},
        },
        "merchantMetadata": {"merchantReferenceId": "order-1", "merchantStoreName": "Bench"},
        "webCheckoutDetails": {"checkoutResultReturnUrl": "https://shop.example/return"},
        "releaseEnvironment": "Sandbox",
    }
).encode()
COMPLETED_JSON = SESSION_JSON.replace(b'"Open"', b'"Completed"')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients reuse one connection
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-amz-pay-request-id", "bench-request")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(SESSION_JSON)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self._answer(COMPLETED_JSON)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


def measure(call: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(n):
        w0, c0 = time.perf_counter(), time.thread_time()
        call()
        cpus.append(time.thread_time() - c0)
        walls.append(time.perf_counter() - w0)
    return walls, cpus


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report_rows(
    results: dict[str, tuple[list[float], list[float]]], reference: SignatureReference
) -> list[tuple[str, str, str, str]]:
    """Per client: CPU and wall time per call (p50 / p95); then ours over the floor and the
    ratios with their targets; then the speed reference."""
    fig = reference.figure
    rows: list[tuple[str, str, str, str]] = []
    for name, (walls, cpus) in results.items():
        rows.append(
            (
                f"{name}: CPU per call p50 / p95",
                f"{fig(statistics.median(cpus))} / {fig(p95(cpus))}",
                "",
                "",
            )
        )
        rows.append(
            (
                f"{name}: wall per call p50 / p95",
                f"{fig(statistics.median(walls))} / {fig(p95(walls))}",
                "",
                "",
            )
        )
    cpu = {name: statistics.median(c) for name, (_, c) in results.items()}
    wall = {name: statistics.median(w) for name, (w, _) in results.items()}
    rows += [
        (
            "ours: CPU overhead over the floor per call (p50)",
            fig(cpu["ours"] - cpu["floor"]),
            "",
            "",
        ),
        (
            "ours: wall overhead over the floor per call (p50)",
            fig(wall["ours"] - wall["floor"]),
            "",
            "",
        ),
        (
            "ours / floor, CPU",
            f"{cpu['ours'] / cpu['floor']:.2f}x",
            "<= 1.25x",
            verdict(cpu["ours"] <= 1.25 * cpu["floor"]),
        ),
        ("ours / floor, wall", f"{wall['ours'] / wall['floor']:.2f}x", "", ""),
        (
            "community / ours, CPU",
            f"{cpu['community'] / cpu['ours']:.1f}x",
            ">= 10x",
            verdict(cpu["community"] >= 10 * cpu["ours"]),
        ),
        ("community / ours, wall", f"{wall['community'] / wall['ours']:.1f}x", "", ""),
        reference.row(),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="Get + Complete pairs per client")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: --n 40 --warmup 5 (a few seconds)"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.warmup = 40, 5

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    reference = measure_signature(key=key)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    amount = Price.of("12.50", "USD")

    # (a) ours
    ours = AmazonPayClient(
        public_key_id="AKEYBENCH", private_key=pem, endpoint=base, algorithm="AMZN-PAY-RSASSA-PSS"
    )

    def ours_pair() -> tuple[Callable[[], object], Callable[[], object]]:
        return (
            lambda: ours.get_checkout_session(SESSION_ID),
            lambda: ours.complete_checkout_session(SESSION_ID, amount),
        )

    # (b) community: it reads the key *file* and imports it on every call, and opens a new
    # connection per call (requests.request). We only redirect its endpoint to the local server.
    from AmazonPay import Client as CommunityClient  # type: ignore[import-untyped]

    key_file = tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False)  # noqa: SIM115
    key_file.write(pem)
    key_file.close()
    community = CommunityClient("AKEYBENCH", key_file.name, "na", sandbox=True)
    community.endpoint = base  # monkeypatch: the package hard-codes https://pay-api.amazon.com
    complete_body = {"chargeAmount": amount.to_json()}

    def community_pair() -> tuple[Callable[[], object], Callable[[], object]]:
        return (
            lambda: community.get_checkout_session(SESSION_ID).json(),
            lambda: community.complete_checkout_session(SESSION_ID, complete_body).json(),
        )

    # (c) floor: one signature and one pooled request, nothing else.
    floor_session = requests.Session()
    floor_session.mount("http://", HTTPAdapter(pool_maxsize=16, max_retries=0))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20)
    to_sign = signing.string_to_sign(signing.Algorithm.PSS, "bench").encode()
    body = json.dumps(complete_body).encode()
    get_url = f"{base}/sandbox/v2/checkoutSessions/{SESSION_ID}"

    def floor_get() -> object:
        signature = key.sign(to_sign, pss, hashes.SHA256())
        return floor_session.get(
            get_url, headers={"authorization": signature.hex()}, timeout=(3.05, 10)
        ).content

    def floor_complete() -> object:
        signature = key.sign(to_sign, pss, hashes.SHA256())
        return floor_session.post(
            get_url + "/complete",
            data=body,
            headers={"authorization": signature.hex()},
            timeout=(3.05, 10),
        ).content

    def floor_pair() -> tuple[Callable[[], object], Callable[[], object]]:
        return floor_get, floor_complete

    contenders = {"floor": floor_pair(), "ours": ours_pair(), "community": community_pair()}
    results: dict[str, tuple[list[float], list[float]]] = {}
    for name, (get_call, complete_call) in contenders.items():
        measure(get_call, args.warmup)
        measure(complete_call, args.warmup)
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(args.n):
            for call in (get_call, complete_call):
                w, c = measure(call, 1)
                walls += w
                cpus += c
        results[name] = (walls, cpus)

    reference = reference.merged(measure_signature(key=key))
    print(f"client_bench: {args.n} Get + {args.n} Complete calls per client against {base}")
    print("community client: endpoint attribute monkeypatched to the local http URL")
    print(format_table(report_rows(results, reference)))
    ours.close()
    floor_session.close()
    server.shutdown()
    Path(key_file.name).unlink()


if __name__ == "__main__":
    main()
