"""Serve a Simulator over HTTP/1.1 with keep-alive, in a daemon thread or from the runner.

The simulator never shares a worker with the shop, so a shop served by one sync gunicorn
worker can call it without deadlocking.

Werkzeug's own request handler ends every response with `Connection: close` (its WSGI loop
cannot tell where one request ends and the next begins), so a pooled client would open a TCP
connection - and, over TLS, a handshake - per API call. `KeepAliveRequestHandler` frames both
directions itself instead: it reads exactly the request body the client announced (draining what
the app left unread), sends a Content-Length or chunked body, and keeps the connection open
unless the client, the framing or a fault says otherwise. `KeepAliveWSGIServer` remembers its
connections so that closing the server also closes the idle ones a pooled client holds.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler

from amazonpay.simulator.app import Simulator

# A kept-alive connection that stays silent this long is closed (it also bounds a stalled read).
IDLE_TIMEOUT_SECONDS = 75.0
# A request body the app left unread is skipped to reuse the connection up to this size;
# beyond it the connection is closed instead.
MAX_DRAIN_BYTES = 1024 * 1024


class _RequestBody(io.RawIOBase):
    """`wsgi.input`: at most the announced Content-Length bytes of the connection's stream."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: self.remaining]
        count = int(self._stream.readinto(view) or 0)
        if count == 0:  # the client went away mid-body: nothing more will come
            self.remaining = -1
            return 0
        self.remaining -= count
        return count

    def drain(self) -> bool:
        """Skip what the app did not read; False when the connection cannot be reused."""
        if self.remaining < 0 or self.remaining > MAX_DRAIN_BYTES:
            return False
        while self.remaining > 0:
            if not self.read(min(self.remaining, 65536)):
                return False
        return True


class KeepAliveRequestHandler(WSGIRequestHandler):
    """Werkzeug's WSGI handler speaking HTTP/1.1 with persistent connections."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body go out in separate writes: without TCP_NODELAY the body would wait for
    # the client's delayed ACK (~40 ms) on every response of a reused connection.
    disable_nagle_algorithm = True
    server: KeepAliveWSGIServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        # Idle until the request line arrives: closing the server may shut this connection.
        if not self.server.set_idle(self.connection, True):
            self.close_connection = True
            return
        super().handle_one_request()

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):
            return  # an idle keep-alive connection expiring is routine, not an error
        super().log_error(format, *args)

    def run_wsgi(self) -> None:
        if not self.server.set_idle(self.connection, False):
            self.close_connection = True  # the server is closing: answer this one, then close
        environ = self.environ = self.make_environ()
        body: _RequestBody | None = None
        if "HTTP_TRANSFER_ENCODING" in environ:
            # Werkzeug's DechunkedInput reads a chunked body; where it ends is not tracked here.
            self.close_connection = True
        else:
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length, self.close_connection = 0, True
            body = _RequestBody(self.rfile, length)
            environ["wsgi.input"] = body
        response = _Response(self, environ)
        try:
            response.run(self.server.app)
        except (ConnectionError, TimeoutError) as error:
            self.close_connection = True
            self.connection_dropped(error, environ)
            return
        except Exception:
            if self.server.passthrough_errors:
                raise
            self.close_connection = True
            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            if not response.headers_sent:
                with contextlib.suppress(Exception):  # the client is beyond help otherwise
                    _Response(self, environ).run(InternalServerError())
            return
        if not response.complete or (body is not None and not body.drain()):
            self.close_connection = True
        if self.server.closing:
            self.close_connection = True


class _Response:
    """One WSGI response written with HTTP/1.1 framing (werkzeug's `write`, minus the close)."""

    def __init__(self, handler: KeepAliveRequestHandler, environ: dict[str, Any]) -> None:
        self.handler = handler
        self.environ = environ
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False
        self.expected: int | None = None  # the declared Content-Length
        self.written = 0
        self.no_body = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("Headers already set")
        self.status, self.headers = status, list(headers)
        return self.write

    def _send_headers(self) -> None:
        handler = self.handler
        assert self.status is not None, "write() before start_response"
        code_text, _, message = self.status.partition(" ")
        code = int(code_text)
        handler.send_response(code, message)
        names = set()
        for name, value in self.headers:
            lower = name.lower()
            if lower in ("connection", "transfer-encoding", "keep-alive"):
                continue  # hop-by-hop framing is this server's business
            if lower == "content-length":
                try:
                    self.expected = int(value)
                except ValueError:
                    continue
            handler.send_header(name, value)
            names.add(lower)
        self.no_body = (
            self.environ["REQUEST_METHOD"] == "HEAD" or 100 <= code < 200 or code in (204, 304)
        )
        if not self.no_body and "content-length" not in names:
            if handler.request_version >= "HTTP/1.1":
                self.chunked = True
                handler.send_header("Transfer-Encoding", "chunked")
            else:  # an HTTP/1.0 client learns where the body ends only from the close
                handler.close_connection = True
        if handler.close_connection:
            handler.send_header("Connection", "close")
        elif handler.request_version < "HTTP/1.1":
            handler.send_header("Connection", "keep-alive")
        handler.end_headers()
        self.headers_sent = True

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes), "applications must write bytes"
        if not self.headers_sent:
            self._send_headers()
        if data and not self.no_body:
            self.written += len(data)
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self.handler.wfile.write(data)

    def run(self, app: Any) -> None:
        result: Iterable[bytes] = app(self.environ, self.start_response)
        try:
            for data in result:
                self.write(data)
            if not self.headers_sent:
                self.write(b"")
            if self.chunked:
                self.handler.wfile.write(b"0\r\n\r\n")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @property
    def complete(self) -> bool:
        """Did the body match its Content-Length, so the next response starts where expected?"""
        return self.no_body or self.chunked or self.expected in (None, self.written)


class KeepAliveWSGIServer(ThreadedWSGIServer):
    """A thread per connection (daemon threads), connections reused until idle or closed."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        ssl_context: ssl.SSLContext | tuple[str, str] | None = None,
    ) -> None:
        super().__init__(host, port, app, KeepAliveRequestHandler, ssl_context=ssl_context)
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, bool] = {}  # connection -> waiting for a request
        self.connections_accepted = 0
        self.closing = False

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections[connection] = False
            self.connections_accepted += 1

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.pop(connection, None)

    def set_idle(self, connection: socket.socket, idle: bool) -> bool:
        """Mark a connection idle or busy; False when the server is closing."""
        with self._connections_lock:
            if connection in self._connections:
                self._connections[connection] = idle
            return not self.closing

    def server_close(self) -> None:
        """Stop listening and close the idle keep-alive connections; busy ones close after
        their response. Handler threads are daemons, so nothing here waits for them."""
        with self._connections_lock:
            self.closing = True
            idle = [conn for conn, waiting in self._connections.items() if waiting]
        super().server_close()
        for connection in idle:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)


def make_keepalive_server(
    host: str,
    port: int,
    app: Any,
    ssl_context: ssl.SSLContext | tuple[str, str] | None = None,
) -> KeepAliveWSGIServer:
    """A threaded HTTP/1.1 keep-alive server for `app` (not yet serving)."""
    return KeepAliveWSGIServer(host, port, app, ssl_context=ssl_context)


@dataclass
class ServerHandle:
    """Where a threaded simulator listens, and how to stop it."""

    base_url: str
    port: int
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def connections_accepted(self) -> int:
        """TCP connections the server has accepted so far (keep-alive reuses them)."""
        server = self._server
        return server.connections_accepted if isinstance(server, KeepAliveWSGIServer) else 0

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
    server = make_keepalive_server(host, port, simulator.wsgi_app, ssl_context=ssl_context)
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
