"""Offline mode: a development key pair, a secret key and one shared embedded simulator.

Several gunicorn workers each call `create_app()`; they must end up talking to the same
simulator (checkout sessions live in its memory). A file lock under `instance/` serialises
start-up, a port file records where the simulator listens, and a later process reuses it when
`/_simulator/health` answers, or takes over (on the same port) when its owner has died.
The simulator listens on loopback only; `SimulatorPagesProxy` serves its buyer pages through
the shop's own port under `/_amazon-pay-simulator`, for a browser that reaches nothing else
(a container publishing one port).
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.exceptions import SecurityError
from werkzeug.sansio.utils import get_host

from amazonpay.simulator import Simulator, serve_in_thread
from amazonpay.simulator.wallet import CSRF_COOKIE

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEV_KEY_ID",
    "SIMULATOR_PREFIX",
    "OfflineSimulator",
    "SimulatorPagesProxy",
    "ensure_admin_password",
    "ensure_dev_key",
    "ensure_secret_key",
    "ensure_simulator",
]

logger = logging.getLogger(__name__)

DEV_KEY_ID = "SANDBOX-SIMULATOR-DEV"
_PRIVATE_KEY_FILE = "amazonpay-dev-private.pem"
_SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
_ADMIN_PASSWORD_FILE = "admin_password"  # noqa: S105 - a file name, not a secret
_LOCK_FILE = "simulator.lock"
_PORT_FILE = "simulator.port"


@contextmanager
def _instance_lock(instance: Path) -> Iterator[None]:
    """An exclusive lock across processes for start-up work under `instance/`."""
    instance.mkdir(parents=True, exist_ok=True)
    with (instance / _LOCK_FILE).open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable only by us, atomically (rename), so no reader sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def ensure_dev_key(instance: Path) -> rsa.RSAPrivateKey:
    """The development private key under instance/, generated on first use."""
    path = instance / _PRIVATE_KEY_FILE
    with _instance_lock(instance):
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_private(path, pem)
            logger.info("generated the development Amazon Pay key %s", path)
        pem = path.read_bytes()
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return loaded


def ensure_secret_key(instance: Path) -> str:
    """The Flask secret for the offline demo, generated once and kept under instance/."""
    path = instance / _SECRET_KEY_FILE
    with _instance_lock(instance):
        if not path.exists():
            _write_private(path, secrets.token_hex(32).encode("ascii"))
        return path.read_text("ascii").strip()


def ensure_admin_password(instance: Path) -> str:
    """The merchant console's password for the offline demo, generated once under instance/.

    It is printed when it is created - once, by whichever process makes it under the lock -
    and never again: later starts (and the other workers) read it from the file.
    """
    path = instance / _ADMIN_PASSWORD_FILE
    with _instance_lock(instance):
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(18).encode("ascii"))
            print(
                f"Merchant console (/admin) password: {path.read_text('ascii').strip()}"
                f" (kept in {path})",
                file=sys.stderr,
                flush=True,
            )
        return path.read_text("ascii").strip()


@dataclass
class OfflineSimulator:
    """Where the shared simulator listens; `handle` is set in the process that runs it.

    `base_url` is its loopback address (the API, the control API, IPN certificates);
    `pages_url` is where buyers' browsers load checkout.js and the hosted pages.
    """

    base_url: str
    handle: Any | None = None
    public_url: str | None = None

    @property
    def pages_url(self) -> str:
        return self.public_url or self.base_url

    def pages_proxy(
        self, app: WSGIApplication, trusted_hosts: Iterable[str] | None
    ) -> SimulatorPagesProxy:
        """`app` with the simulator's buyer pages mounted under SIMULATOR_PREFIX."""
        return SimulatorPagesProxy(app, self.base_url, trusted_hosts)

    def shutdown(self) -> None:
        if self.handle is not None:
            self.handle.shutdown()
            self.handle = None


def _healthy(base_url: str) -> bool:
    try:
        response = requests.get(f"{base_url}/_simulator/health", timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200


def ensure_simulator(
    instance: Path,
    public_key_id: str,
    private_key: rsa.RSAPrivateKey,
    port: int = 0,
    public_url: str | None = None,
) -> OfflineSimulator:
    """Reuse the simulator another process of this instance started, or start one here.

    `public_url` (APP_SIMULATOR_PUBLIC_URL) is where browsers reach its pages; None: its own
    loopback address, which only a browser on this machine can open.
    """
    port_file = instance / _PORT_FILE
    with _instance_lock(instance):
        recorded: int | None = None
        try:
            recorded = int(port_file.read_text("ascii").strip())
        except (OSError, ValueError):
            recorded = None
        if recorded:
            base_url = f"http://127.0.0.1:{recorded}"
            if _healthy(base_url):
                return OfflineSimulator(base_url, public_url=public_url)
        simulator = Simulator(
            public_keys={public_key_id: private_key.public_key()},
            behind_proxy=True,  # only SimulatorPagesProxy can reach it with forwarded headers
            public_url=public_url,
        )
        handle = None
        if recorded and not port:
            try:  # take over on the same port so pages and other workers keep working
                handle = serve_in_thread(simulator, "127.0.0.1", recorded)
            except OSError:
                handle = None
        if handle is None:
            handle = serve_in_thread(simulator, "127.0.0.1", port)
        port_file.write_text(str(handle.port), "ascii")
        logger.info("embedded Amazon Pay simulator at %s", handle.base_url)
        return OfflineSimulator(str(handle.base_url), handle, public_url)


# The simulator's buyer pages under the shop's own origin. Only what a browser needs goes
# through: checkout.js, the button's form target, the hosted page, the wallet page and their
# stylesheet; the signed API and the control API stay on loopback.
SIMULATOR_PREFIX = "/_amazon-pay-simulator"
_BROWSER_ROUTES = frozenset({"checkout.js", "checkout", "hosted", "jr", "_simulator-static"})
_FORWARDED_HEADERS = (
    "Accept",
    "Accept-Language",
    "Content-Type",
    "Origin",
    "Referer",
    "Sec-Fetch-Site",
    "User-Agent",
)
# Hop-by-hop headers (RFC 9110 section 7.6.1) and a length the WSGI server recomputes.
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
_MAX_BODY = 64 * 1024  # the button's payloadJSON is a few KB; the shop's own limit
_TIMEOUT_SECONDS = 10.0


class SimulatorPagesProxy:
    """WSGI middleware: `/_amazon-pay-simulator/<page>` forwarded to the simulator's loopback
    port, everything else to the shop.

    The simulator state lives in one process; every gunicorn worker reaches it over HTTP. It
    learns the browser's view (scheme, host, prefix) from X-Forwarded-*, which this proxy sets
    itself after checking the Host against the shop's trusted hosts.
    """

    def __init__(
        self, app: WSGIApplication, simulator_url: str, trusted_hosts: Iterable[str] | None
    ) -> None:
        self.app = app
        location = urlsplit(simulator_url)
        self._host = location.hostname or "127.0.0.1"
        self._port = location.port or 80
        self._trusted = list(trusted_hosts) if trusted_hosts is not None else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(SIMULATOR_PREFIX + "/"):
            return self.app(environ, start_response)
        inner = path[len(SIMULATOR_PREFIX) :]
        if inner.split("/", 2)[1] not in _BROWSER_ROUTES:
            return _plain(start_response, 404, "Not found.")
        try:
            host = get_host(
                environ["wsgi.url_scheme"],
                environ.get("HTTP_HOST"),
                (environ.get("SERVER_NAME", ""), environ.get("SERVER_PORT", "")),
                self._trusted,
            )
        except SecurityError:
            return _plain(start_response, 400, "Unknown host.")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _plain(start_response, 400, "Bad request.")
        if length > _MAX_BODY or length < 0:
            return _plain(start_response, 413, "Request too large.")
        body = environ["wsgi.input"].read(length) if length else None
        headers = {
            name: environ[key]
            for name in _FORWARDED_HEADERS
            if (key := "HTTP_" + name.upper().replace("-", "_")) in environ
        }
        if "CONTENT_TYPE" in environ:
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        cookie = _simulator_cookie(environ.get("HTTP_COOKIE", ""))
        if cookie:
            headers["Cookie"] = cookie
        headers |= {
            "X-Forwarded-Proto": environ["wsgi.url_scheme"],
            "X-Forwarded-Host": host,
            "X-Forwarded-Prefix": SIMULATOR_PREFIX,
        }
        query = environ.get("QUERY_STRING", "")
        target = quote(inner.encode("latin-1")) + (f"?{query}" if query else "")
        connection = http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT_SECONDS)
        try:
            connection.request(environ["REQUEST_METHOD"], target, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("simulator pages proxy: %s", type(exc).__name__)
            return _plain(start_response, 502, "The Amazon Pay simulator is not answering.")
        finally:
            connection.close()
        returned = [
            (name, value)
            for name, value in answer.getheaders()
            if name.lower() not in _NOT_RETURNED
        ]
        returned.append(("Content-Length", str(len(content))))
        start_response(f"{answer.status} {answer.reason}", returned)
        return [content]


def _simulator_cookie(header: str) -> str:
    """Only the simulator's own cookie: the shop's session cookie stays with the shop."""
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return ""
    morsel = jar.get(CSRF_COOKIE)
    return f"{CSRF_COOKIE}={morsel.value}" if morsel is not None else ""


def _plain(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    body = f"{text}\n".encode()
    reason = http.client.responses.get(status, "")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
