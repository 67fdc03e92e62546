"""Run a Simulator on its own port in a daemon thread (werkzeug's threaded server).

The simulator never shares a worker with the shop, so a shop served by one sync gunicorn
worker can call it without deadlocking.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field

from werkzeug.serving import BaseWSGIServer, make_server

from amazonpay.simulator.app import Simulator


@dataclass
class ServerHandle:
    """Where a threaded simulator listens, and how to stop it."""

    base_url: str
    port: int
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def serve_in_thread(
    simulator: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | tuple[str, str] | None = None,
) -> ServerHandle:
    """Start serving `simulator` (port 0 = an ephemeral port) and return at once."""
    server = make_server(host, port, simulator.wsgi_app, threaded=True, ssl_context=ssl_context)
    actual_port = int(server.server_address[1])
    scheme = "https" if ssl_context is not None else "http"
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    base_url = f"{scheme}://{shown_host}:{actual_port}"
    if simulator.base_url is None:
        simulator.base_url = base_url
    # A short poll interval keeps shutdown() fast (tests start one server each).
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"amazon-pay-simulator-{actual_port}",
        daemon=True,
    )
    thread.start()
    return ServerHandle(base_url=base_url, port=actual_port, _server=server, _thread=thread)
