"""The simulator's HTTP server keeps connections alive: a pooled client uses one TCP connection.

The observable is the server's own count of accepted connections (`ServerHandle.
connections_accepted`) and, for the runner in its own process, the client's local port.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from amazonpay.simulator import ServerHandle, Simulator, serve_in_thread
from tests.simulator.conftest import Api, Keys, public_keys, session_payload
from tests.simulator.test_runner import start_runner
from tests.support.certs import write_tls_files


def test_pooled_api_calls_share_one_connection(api: Api, server: ServerHandle) -> None:
    created = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="k1")
    session_id = created.json()["checkoutSessionId"]
    fetched = api.call("GET", f"/checkoutSessions/{session_id}")
    checkout_js = api.http.get(f"{server.base_url}/checkout.js", timeout=5)
    log = api.http.get(f"{server.base_url}/_simulator/requests", timeout=5)

    assert [r.status_code for r in (created, fetched, checkout_js, log)] == [201, 200, 200, 200]
    for response in (created, fetched, checkout_js, log):
        assert response.headers.get("Connection", "").lower() != "close"
        assert "Content-Length" in response.headers or "chunked" in response.headers.get(
            "Transfer-Encoding", ""
        )
    assert server.connections_accepted == 1


def test_a_body_the_app_never_read_does_not_leak_into_the_next_request(
    server: ServerHandle,
) -> None:
    with requests.Session() as http:
        unread = http.post(f"{server.base_url}/no/such/page", data=b"x" * 50_000, timeout=5)
        after = http.get(f"{server.base_url}/_simulator/health", timeout=5)

    assert unread.status_code == 404
    assert after.status_code == 200
    assert server.connections_accepted == 1


def test_drop_fault_closes_its_connection_and_the_next_call_reconnects(
    api: Api, server: ServerHandle
) -> None:
    assert api.control("faults", {"operation": "CreateCheckoutSession", "kind": "drop"}).ok
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="k1")

    retried = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="k1")
    again = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="k2")

    assert (retried.status_code, again.status_code) == (201, 201)
    # One connection carried the fault set-up and the dropped call; the retries share another.
    assert server.connections_accepted == 2


def test_http_1_0_clients_get_a_closed_connection(server: ServerHandle) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /_simulator/health HTTP/1.0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # ends only because the server closes
            received += chunk

    head = received.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 200")
    assert "Connection: close" in head


def test_shutdown_is_not_held_up_by_an_idle_keepalive_connection(keys: Keys) -> None:
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys)))
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5)
    conn.request("GET", "/_simulator/health")
    assert conn.getresponse().read()
    idle = conn.sock
    assert idle is not None

    started = time.monotonic()
    handle.shutdown()

    assert time.monotonic() - started < 2
    assert idle.recv(1) == b""  # the server closed the pooled connection, not just the listener
    conn.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_tls_files(tmp_path)


@pytest.fixture
def tls_server(keys: Keys, tls_files: tuple[Path, Path]) -> Iterator[ServerHandle]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    handle = serve_in_thread(Simulator(public_keys=public_keys(keys)), ssl_context=context)
    yield handle
    handle.shutdown()


def test_tls_connections_are_kept_alive_and_drop_still_works(
    tls_server: ServerHandle, tls_files: tuple[Path, Path], keys: Keys
) -> None:
    api = Api(tls_server.base_url, keys)
    api.http.verify = str(tls_files[0])
    api.http.trust_env = False  # REQUESTS_CA_BUNDLE would override the session's `verify`

    first = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="t1")
    second = api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="t2")
    assert (first.status_code, second.status_code) == (201, 201)
    assert tls_server.connections_accepted == 1

    assert api.control("faults", {"operation": "CreateCheckoutSession", "kind": "drop"}).ok
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="t3")
    assert api.call("POST", "/checkoutSessions", session_payload(), idempotency_key="t3").ok
    assert tls_server.connections_accepted == 2
    api.http.close()


def test_the_runner_keeps_connections_alive(tmp_path: Path) -> None:
    process, info = start_runner(["--key-dir", str(tmp_path)])
    try:
        host_port = info["base_url"].removeprefix("http://")
        conn = http.client.HTTPConnection(host_port, timeout=5)
        ports = []
        for path in ("/_simulator/health", "/checkout.js", "/_simulator/requests"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Connection", "").lower() != "close"
            response.read()
            assert conn.sock is not None  # http.client drops a socket the server closes
            ports.append(conn.sock.getsockname()[1])
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert len(set(ports)) == 1
