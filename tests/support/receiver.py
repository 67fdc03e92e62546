"""A tiny IPN endpoint for tests: an HTTP server on an ephemeral port that keeps what it is sent."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Lower-cased request headers and the raw body of one POST.
Received = tuple[dict[str, str], bytes]


@dataclass(frozen=True)
class IpnReceiver:
    url: str
    inbox: queue.Queue[Received]

    def collect(self, count: int, timeout: float) -> list[Received]:
        """Up to `count` posts, waiting at most `timeout` seconds for them."""
        got: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.inbox.get(timeout=0.1))
            except queue.Empty:
                continue
        return got


@contextmanager
def ipn_receiver() -> Iterator[IpnReceiver]:
    """Serve POSTs on 127.0.0.1 (path /ipn in the URL), answering 200 and queueing each one."""
    inbox: queue.Queue[Received] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            inbox.put(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield IpnReceiver(f"http://127.0.0.1:{server.server_address[1]}/ipn", inbox)
    finally:
        server.shutdown()
        server.server_close()
