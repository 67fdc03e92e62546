"""The client's own pooled session on real sockets: the bytes it sends, proxies, pooled connections.

The client mounts an adapter that keeps each origin's connection pool at hand; these tests read
what a real server receives, so the shortcut must leave the wire exactly as requests sends it.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.client import AmazonPayClient, idempotency_key_for
from amazonpay.models import Price

SESSION_ID = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc"
USD = Price.of("12.50", "USD")
KEY = idempotency_key_for("order-42")
NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
ANSWER = json.dumps({"checkoutSessionId": SESSION_ID, "statusDetails": {"state": "Open"}}).encode()
SIGNATURE = re.compile(rb"Signature=[A-Za-z0-9+/=]+")


@dataclass
class Seen:
    connection: int  # which accepted connection carried the request, from 0
    head: bytes  # request line and headers, as received
    body: bytes


@dataclass
class RecordingServer:
    """HTTP/1.1 keep-alive on a raw socket: records every request's bytes, answers 200 JSON."""

    sock: socket.socket
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self.answer, args=(conn, number), daemon=True).start()

    def answer(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                length = int(found.group(1)) if found else 0
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.seen.append(Seen(number, head, body))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"x-amz-pay-request-id: rid-1\r\n"
                    + f"content-length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    recorder = RecordingServer(sock)
    threading.Thread(target=recorder.serve, daemon=True).start()
    yield recorder
    sock.close()


@pytest.fixture
def client_for(private_key: rsa.RSAPrivateKey) -> Callable[..., AmazonPayClient]:
    def make(endpoint: str, **overrides: Any) -> AmazonPayClient:
        return AmazonPayClient(
            public_key_id="AKEYID123",
            private_key=private_key,
            endpoint=endpoint,
            now=lambda: NOW,
            **overrides,
        )

    return make


def _calls(client: AmazonPayClient) -> None:
    client.get_checkout_session(SESSION_ID)
    client.complete_checkout_session(SESSION_ID, USD, idempotency_key=KEY)
    client.get_checkout_session(SESSION_ID)  # the second time through the kept pool


def test_own_session_sends_the_bytes_a_plain_requests_session_sends(
    server: RecordingServer, client_for: Callable[..., AmazonPayClient]
) -> None:
    endpoint = f"http://127.0.0.1:{server.port}"
    with client_for(endpoint) as own:
        _calls(own)
    with client_for(endpoint, session=requests.Session()) as plain:  # stock HTTPAdapter
        _calls(plain)
    ours, theirs = server.seen[:3], server.seen[3:]
    assert len(theirs) == 3
    for mine, stock in zip(ours, theirs, strict=True):
        # Everything but the PSS signature itself, which is salted at random each time.
        assert SIGNATURE.sub(b"Signature=", mine.head) == SIGNATURE.sub(b"Signature=", stock.head)
        assert mine.body == stock.body
    assert {s.connection for s in ours} == {0}  # one pooled connection for all three calls


def test_an_environment_proxy_still_carries_the_calls(
    server: RecordingServer,
    client_for: Callable[..., AmazonPayClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    with client_for("http://pay-api.invalid") as client:  # resolvable only by the proxy
        _calls(client)
    session = f"http://pay-api.invalid/sandbox/v2/checkoutSessions/{SESSION_ID}"
    assert [s.head.split(b"\r\n", 1)[0].decode() for s in server.seen] == [
        f"GET {session} HTTP/1.1",
        f"POST {session}/complete HTTP/1.1",
        f"GET {session} HTTP/1.1",
    ]


def test_a_call_after_close_opens_a_fresh_connection(
    server: RecordingServer, client_for: Callable[..., AmazonPayClient]
) -> None:
    client = client_for(f"http://127.0.0.1:{server.port}")
    client.get_checkout_session(SESSION_ID)
    client.close()  # closes the pool the adapter kept: it must not be handed out again
    assert client.get_checkout_session(SESSION_ID).checkout_session_id == SESSION_ID
    client.close()
    assert [s.connection for s in server.seen] == [0, 1]
