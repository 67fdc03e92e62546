"""The offline Amazon Pay as one WSGI app: the signed API, the buyer's pages and the control API.

`Simulator.wsgi_app` dispatches three ways: `/v2`, `/sandbox/v2`, `/live/v2` to the API
(`api.py`), `/_simulator/…` to the control API (`control.py`) and everything else to the
buyer's pages (`pages.py`). One lock guards all state (`state/`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from amazonpay import signing
from amazonpay.simulator.api import INTERNAL_ERROR, json_response, serve_api
from amazonpay.simulator.control import not_found, register_control
from amazonpay.simulator.faults import Fault, FaultBook
from amazonpay.simulator.idempotency import IdempotencyRecords
from amazonpay.simulator.notify import Notifier, SigningCertificate, build_envelope
from amazonpay.simulator.pages import append_session_id, register_pages
from amazonpay.simulator.routes import API_PATH, OPERATIONS
from amazonpay.simulator.state import JSONObject, Store
from amazonpay.simulator.throttling import Throttle
from amazonpay.simulator.ticker import start_ticker
from amazonpay.simulator.wallet import register_wallet_page

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "OPERATIONS",
    "SIMULATOR_MERCHANT_ID",
    "SIMULATOR_STORE_ID",
    "Fault",
    "Simulator",
    "append_session_id",
]

log = logging.getLogger(__name__)

SIMULATOR_MERCHANT_ID = "A1SIMULATEDMERCHANT"
SIMULATOR_STORE_ID = "amzn1.application-oa2-client.00000000000000000000000000simulator"

_HERE = Path(__file__).parent
_LOG_LIMIT = 10_000
T = TypeVar("T")


def _as_public_key(key: bytes | str | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        return key
    return signing.load_public_key(key.encode("ascii") if isinstance(key, str) else key)


class Simulator:
    """An in-memory Amazon Pay API v2 with hosted buyer pages (see README.md in this package)."""

    def __init__(
        self,
        *,
        public_keys: Mapping[str, bytes | rsa.RSAPublicKey],
        merchant_id: str = SIMULATOR_MERCHANT_ID,
        store_id: str = SIMULATOR_STORE_ID,
        clock: Callable[[], datetime] | None = None,
        throttling: bool = False,
        control_api: bool = True,
        notify_url: str | None = None,
        max_date_skew_future: timedelta = timedelta(seconds=5),
        max_date_age: timedelta = timedelta(minutes=15),
        behind_proxy: bool = False,
        public_url: str | None = None,
    ) -> None:
        self.merchant_id = merchant_id
        self.store_id = store_id
        self.throttling = throttling
        self.control_api = control_api
        self.notify_url = notify_url
        self.max_date_skew_future = max_date_skew_future
        self.max_date_age = max_date_age
        self.base_url: str | None = None  # set by serve_in_thread / the runner; for IPN cert URLs
        # Served to browsers through one reverse proxy (the shop's offline mode): the pages take
        # their scheme, host and path prefix from its X-Forwarded-Proto/Host/Prefix.
        self.behind_proxy = behind_proxy
        # Where browsers reach the pages, for the amazonPayRedirectUrl of sessions made through
        # the API (whose requests come from the shop's server); None: the API request's host.
        self.public_url = public_url.rstrip("/") if public_url else None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self.lock = threading.RLock()
        self._public_keys: dict[str, rsa.RSAPublicKey] = {
            key_id: _as_public_key(key) for key_id, key in public_keys.items()
        }
        self.store = Store(merchant_id=merchant_id, now=self.now)
        self.faults = FaultBook()
        self.throttle = Throttle()
        self.idempotency = IdempotencyRecords()
        self._log: list[JSONObject] = []
        self._certificate: SigningCertificate | None = None
        self._notifier: Notifier | None = None
        self._pages = self._build_pages()
        if notify_url is not None:
            start_ticker(self)

    # ------------------------------------------------------------ public API

    @property
    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        with self.lock:
            return dict(self._public_keys)

    def add_public_key(self, key_id: str, key: bytes | rsa.RSAPublicKey) -> None:
        with self.lock:
            self._public_keys[key_id] = _as_public_key(key)

    def now(self) -> datetime:
        """The simulated time: the clock plus whatever `/_simulator/clock` advanced."""
        return self._clock() + self._offset

    def reference_times(self) -> list[datetime]:
        """The times a request's `x-amz-pay-date` may be fresh against: the real clock, the
        injected one and the simulated one (so clock-driven tests can keep signing)."""
        return [datetime.now(UTC), self._clock(), self.now()]

    def advance_clock(self, seconds: float) -> datetime:
        with self.lock:
            self._offset += timedelta(seconds=seconds)
            self.transact(lambda _store: None)
            return self.now()

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.add(fault)

    def record(self, entry: JSONObject) -> None:
        with self.lock:
            self._log.append(entry)
            if len(self._log) > _LOG_LIMIT:  # a long-running dev server must not grow forever
                del self._log[: len(self._log) - _LOG_LIMIT]

    def request_log(self) -> list[JSONObject]:
        with self.lock:
            return [dict(entry) for entry in self._log]

    def reset(self, *, data: bool = False) -> None:
        with self.lock:
            self.faults.clear()
            self._log.clear()
            self.throttle.clear()
            if data:
                self.idempotency.clear()
                self._offset = timedelta()
                self.store = Store(merchant_id=self.merchant_id, now=self.now)

    def transact(self, action: Callable[[Store], T], base_url: str | None = None) -> T:
        """Run `action` on the store under the lock, after due time-driven changes, and send
        the IPNs it causes."""
        with self.lock:
            self.store.tick()
            try:
                return action(self.store)
            finally:
                self.flush_events(base_url)

    def set_buyer_outcome(self, session_id: str, outcome: str) -> JSONObject:
        return self.transact(lambda store: store.sessions.set_buyer_outcome(session_id, outcome))

    @property
    def certificate(self) -> SigningCertificate:
        with self.lock:
            if self._certificate is None:
                self._certificate = SigningCertificate()
            return self._certificate

    def flush_events(self, base_url: str | None = None) -> None:
        """POST an IPN for every event the store queued (section 10); the caller holds the lock."""
        events = self.store.drain_events()
        if not events or self.notify_url is None:
            return
        if self._notifier is None:
            self._notifier = Notifier(self.notify_url)
        root = self.base_url or base_url or "http://127.0.0.1"
        cert_url = f"{root}/_simulator/sns-cert.pem"
        for event in events:
            envelope = build_envelope(
                event,
                merchant_id=self.merchant_id,
                cert=self.certificate,
                cert_url=cert_url,
                now=datetime.now(UTC),
            )
            self._notifier.send(envelope)

    # ------------------------------------------------------------------ WSGI

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point. Never lets an exception escape as a stack trace."""
        path = environ.get("PATH_INFO", "") or "/"
        try:
            match = API_PATH.match(path)
            if match is not None:
                return serve_api(self, environ, start_response, match)
            if (
                path.startswith("/_simulator/")
                and not self.control_api
                and path != "/_simulator/sns-cert.pem"
            ):
                return json_response(404, not_found(path))(environ, start_response)
            return self._pages.wsgi_app(environ, start_response)
        except Exception:  # the never-a-stack-trace rule: a simulator bug is a JSON 500
            log.exception("simulator bug while answering %s", path)
            return json_response(500, dict(INTERNAL_ERROR))(environ, start_response)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    def _build_pages(self) -> Flask:
        app = Flask(
            "amazonpay.simulator",
            root_path=str(_HERE),
            static_folder="static",
            static_url_path="/_simulator-static",
            template_folder="templates",
        )
        register_pages(app, self)
        register_wallet_page(app, self)
        register_control(app, self)
        if self.behind_proxy:
            app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
        return app
