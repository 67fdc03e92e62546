"""The offline Amazon Pay: the signed API, the buyer's pages, checkout.js and the control API.

`Simulator.wsgi_app` dispatches three ways: `/_simulator/…` (unauthenticated control API for
tests, section "Fault injection" of amazonpay/simulator/README.md), `/v2`, `/sandbox/v2`,
`/live/v2` (the API, answered the way Amazon answers it: docs/amazon-pay-api.md sections 1, 4, 5,
7, 9) and everything else (checkout.js, the button form target and the hosted buyer page).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from amazonpay import signing
from amazonpay.simulator.auth import IDEMPOTENCY_HEADER, authenticate, key_environment
from amazonpay.simulator.notify import Notifier, SigningCertificate, build_envelope
from amazonpay.simulator.state import (
    LIVE,
    OUTCOMES,
    PAYMENT_METHODS,
    SANDBOX,
    SIMULATION_CODES,
    JSONObject,
    SimulatorError,
    Store,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

SIMULATOR_MERCHANT_ID = "A1SIMULATEDMERCHANT"
SIMULATOR_STORE_ID = "amzn1.application-oa2-client.00000000000000000000000000simulator"

_HERE = Path(__file__).parent
_API_PATH = re.compile(r"^/(?:(?P<env>sandbox|live)/)?v2/(?P<resource>.*?)/?$")
_ID = r"(?P<id>[A-Za-z0-9_-]+)"

# (method, resource pattern, operation name): section 5.1.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"checkoutSessions"), "CreateCheckoutSession"),
    ("GET", re.compile(rf"checkoutSessions/{_ID}"), "GetCheckoutSession"),
    ("PATCH", re.compile(rf"checkoutSessions/{_ID}"), "UpdateCheckoutSession"),
    ("POST", re.compile(rf"checkoutSessions/{_ID}/complete"), "CompleteCheckoutSession"),
    ("GET", re.compile(rf"chargePermissions/{_ID}"), "GetChargePermission"),
    ("PATCH", re.compile(rf"chargePermissions/{_ID}"), "UpdateChargePermission"),
    ("DELETE", re.compile(rf"chargePermissions/{_ID}/close"), "CloseChargePermission"),
    ("POST", re.compile(r"charges"), "CreateCharge"),
    ("GET", re.compile(rf"charges/{_ID}"), "GetCharge"),
    ("POST", re.compile(rf"charges/{_ID}/capture"), "CaptureCharge"),
    ("DELETE", re.compile(rf"charges/{_ID}/cancel"), "CancelCharge"),
    ("POST", re.compile(r"refunds"), "CreateRefund"),
    ("GET", re.compile(rf"refunds/{_ID}"), "GetRefund"),
]
OPERATIONS = tuple(name for _, _, name in _ROUTES)

# Section 7 / labs sample: these POSTs need an idempotency key; Complete takes one optionally.
_KEY_REQUIRED = {"CreateCheckoutSession", "CreateCharge", "CaptureCharge", "CreateRefund"}
_SUCCESS_STATUS = {"CreateCheckoutSession": 201, "CreateCharge": 201, "CreateRefund": 201}

# Section 9, sandbox column: (max quota = burst, restore rate per second).
THROTTLE_LIMITS: dict[str, tuple[int, float]] = {
    "CompleteCheckoutSession": (2, 1.0),
    "CreateCheckoutSession": (5, 1.0),
    "GetCheckoutSession": (10, 1.0),
    "UpdateCheckoutSession": (5, 1.0),
    "CreateCharge": (2, 1.0),
    "CaptureCharge": (2, 1.0),
    "CancelCharge": (2, 1.0),
    "GetCharge": (5, 1.0),
    "GetChargePermission": (10, 1.0),
    "UpdateChargePermission": (5, 1.0),
    "CloseChargePermission": (2, 1.0),
    "CreateRefund": (2, 1.0),
    "GetRefund": (5, 1.0),
}

_LOG_LIMIT = 10_000
_TICK_SECONDS = 1.0
_FAULT_KINDS = ("status", "drop", "delay", "pending")
_STATUS_REASONS = {
    408: "RequestTimeout",
    425: "TooEarly",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class _TokenBucket:
    """Leaky bucket: `burst` tokens, refilled at `rate` per second (section 9)."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float | None:
        """None when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


@dataclass
class Fault:
    """One scripted misbehaviour for the next `count` calls of an operation."""

    operation: str
    kind: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay_ms: int = 0
    checkout_session_id: str | None = None

    def to_json(self) -> JSONObject:
        return {
            "operation": self.operation,
            "kind": self.kind,
            "count": self.count,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "checkout_session_id": self.checkout_session_id,
        }


@dataclass
class _Answer:
    status: int
    body: JSONObject
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    status: int
    body: JSONObject


def _error_answer(error: SimulatorError) -> _Answer:
    return _Answer(error.status, error.body())


def append_session_id(url: str, session_id: str) -> str:
    """Add `amazonCheckoutSessionId` with `?` or `&`, keeping the query, dropping a fragment."""
    parts = urlsplit(url)
    parameter = f"amazonCheckoutSessionId={quote(session_id, safe='')}"
    query = f"{parts.query}&{parameter}" if parts.query else parameter
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


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
    ) -> None:
        self.merchant_id = merchant_id
        self.store_id = store_id
        self.throttling = throttling
        self.control_api = control_api
        self.notify_url = notify_url
        self.max_date_skew_future = max_date_skew_future
        self.max_date_age = max_date_age
        self.base_url: str | None = None  # set by serve_in_thread / the runner; for IPN cert URLs
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._lock = threading.RLock()
        self._public_keys: dict[str, rsa.RSAPublicKey] = {
            key_id: _as_public_key(key) for key_id, key in public_keys.items()
        }
        self._store = Store(merchant_id=merchant_id, now=self.now)
        self._faults: list[Fault] = []
        self._log: list[JSONObject] = []
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self._buckets: dict[tuple[str, str], _TokenBucket] = {}
        self._certificate: SigningCertificate | None = None
        self._notifier: Notifier | None = None
        self._pages = self._build_pages()
        if notify_url is not None:
            _start_ticker(self)

    # ------------------------------------------------------------ public API

    @property
    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        with self._lock:
            return dict(self._public_keys)

    def add_public_key(self, key_id: str, key: bytes | rsa.RSAPublicKey) -> None:
        with self._lock:
            self._public_keys[key_id] = _as_public_key(key)

    def now(self) -> datetime:
        """The simulated time: the clock plus whatever `/_simulator/clock` advanced."""
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            self._store.tick()
            self._flush_events(self.base_url)
            return self.now()

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _record(self, entry: JSONObject) -> None:
        with self._lock:
            self._log.append(entry)
            if len(self._log) > _LOG_LIMIT:  # a long-running dev server must not grow forever
                del self._log[: len(self._log) - _LOG_LIMIT]

    def request_log(self) -> list[JSONObject]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def reset(self, *, data: bool = False) -> None:
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._buckets.clear()
            if data:
                self._idempotency.clear()
                self._offset = timedelta()
                self._store = Store(merchant_id=self.merchant_id, now=self.now)

    def set_buyer_outcome(self, session_id: str, outcome: str) -> JSONObject:
        with self._lock:
            self._store.tick()
            return self._store.set_buyer_outcome(session_id, outcome)

    @property
    def certificate(self) -> SigningCertificate:
        with self._lock:
            if self._certificate is None:
                self._certificate = SigningCertificate()
            return self._certificate

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point. Never lets an exception escape as a stack trace."""
        path = environ.get("PATH_INFO", "") or "/"
        try:
            match = _API_PATH.match(path)
            if match is not None:
                return self._api(environ, start_response, match)
            if (
                path.startswith("/_simulator/")
                and not self.control_api
                and path != "/_simulator/sns-cert.pem"
            ):
                return self._json(404, _not_found(path))(environ, start_response)
            return self._pages.wsgi_app(environ, start_response)
        except Exception:
            log.exception("simulator bug while answering %s", path)
            body = {"reasonCode": "InternalServerError", "message": "Internal simulator error"}
            return self._json(500, body)(environ, start_response)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    # ------------------------------------------------------------------- API

    @staticmethod
    def _json(
        status: int, body: JSONObject, headers: Mapping[str, str] | None = None
    ) -> WerkzeugResponse:
        response = WerkzeugResponse(
            json.dumps(body), status=status, content_type="application/json;charset=UTF-8"
        )
        response.headers["x-amz-pay-request-id"] = str(uuid.uuid4())
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _api(
        self, environ: WSGIEnvironment, start_response: StartResponse, match: re.Match[str]
    ) -> Iterable[bytes]:
        req = WerkzeugRequest(environ)
        entry: JSONObject = {
            "operation": None,
            "method": req.method,
            "path": req.path,
            "checkout_session_id": None,
            "idempotency_key": req.headers.get(IDEMPOTENCY_HEADER),
            "status": None,
            "fault": None,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        try:
            answer = self._answer_api(req, match, entry)
        except SimulatorError as error:
            answer = _error_answer(error)
        except Exception:
            log.exception("simulator bug in %s %s", req.method, req.path)
            answer = _Answer(
                500, {"reasonCode": "InternalServerError", "message": "Internal simulator error"}
            )
        entry["status"] = answer.status
        if answer.fault is not None:
            entry["fault"] = answer.fault.kind
        self._record(entry)
        fault = answer.fault
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_ms / 1000)
        if fault is not None and fault.kind == "drop":
            # Applied, but no HTTP response at all: close the connection under the client.
            sock = environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            else:  # pragma: no cover - other servers: the best we can do is an abort
                raise ConnectionAbortedError("simulated connection drop")
        return self._json(answer.status, answer.body, answer.headers)(environ, start_response)

    def _answer_api(self, req: WerkzeugRequest, match: re.Match[str], entry: JSONObject) -> _Answer:
        resource = match["resource"]
        operation: str | None = None
        object_id: str | None = None
        path_known = False
        for method, pattern, name in _ROUTES:
            found = pattern.fullmatch(resource)
            if found is None:
                continue
            path_known = True
            if method == req.method:
                operation = name
                object_id = found.groupdict().get("id")
                break
        if operation is None:
            if path_known:
                raise SimulatorError(
                    405, "UnsupportedOperation", f"{req.method} is not supported on {req.path}"
                )
            raise SimulatorError(404, "ResourceNotFound", f"No resource at {req.path}")
        entry["operation"] = operation
        if "CheckoutSession" in operation and operation != "CreateCheckoutSession":
            entry["checkout_session_id"] = object_id

        raw_uri = environ_raw_path(req.environ)
        headers: dict[str, str] = {}
        for name, value in req.headers.items():
            lower = name.lower()
            headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
        body = req.get_data(cache=True)
        path_env = {"sandbox": SANDBOX, "live": LIVE}.get(match["env"] or "")
        caller = authenticate(
            method=req.method,
            raw_path=raw_uri,
            raw_query=req.environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            path_environment=path_env,
            public_keys=self.public_keys,
            now=[datetime.now(UTC), self._clock(), self.now()],
            max_future=self.max_date_skew_future,
            max_age=self.max_date_age,
        )
        if operation in _KEY_REQUIRED and caller.idempotency_key is None:
            raise SimulatorError(
                400, "MissingHeader", f"The {IDEMPOTENCY_HEADER} header is required"
            )
        payload: Any = {}
        if body.strip():
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise SimulatorError(
                    400, "InvalidRequestFormat", "The request body is not valid JSON"
                ) from None

        simulation = headers.get("x-amz-pay-simulation-code")
        if simulation is not None and (
            caller.environment != SANDBOX or simulation not in SIMULATION_CODES.get(operation, ())
        ):
            raise SimulatorError(
                400,
                "InvalidSandboxSimulationSpecified",
                f"{simulation!r} is not a sandbox simulation for {operation} here",
            )

        base_url = req.host_url.rstrip("/")
        with self._lock:
            self._store.tick()
            if self.throttling:
                limit = THROTTLE_LIMITS[operation]
                bucket = self._buckets.setdefault(
                    (caller.public_key_id, operation),
                    _TokenBucket(limit[0], limit[1], time.monotonic()),
                )
                wait = bucket.take(time.monotonic())
                if wait is not None:
                    return _Answer(
                        429,
                        {"reasonCode": "TooManyRequests", "message": "The request was throttled"},
                        {"Retry-After": str(max(1, round(wait)))},
                    )
            fault = self._take_fault(operation, object_id)
            if fault is not None and fault.kind == "status":
                headers_out = {}
                if fault.retry_after is not None:
                    headers_out["Retry-After"] = str(fault.retry_after)
                reason = _STATUS_REASONS.get(fault.status, "ServiceUnavailable")
                return _Answer(
                    fault.status,
                    {"reasonCode": reason, "message": "Simulated fault"},
                    headers_out,
                    fault,
                )

            stored_key: tuple[str, str] | None = None
            fingerprint = ""
            if caller.idempotency_key is not None:
                # Section 7: same key + same request replays; any difference is an error.
                stored_key = (caller.public_key_id, caller.idempotency_key)
                fingerprint = hashlib.sha256(
                    b"\n".join(
                        [
                            req.method.encode(),
                            signing.canonical_uri(raw_uri).rstrip("/").encode(),
                            body,
                        ]
                    )
                ).hexdigest()
                previous = self._idempotency.get(stored_key)
                if previous is not None:
                    if previous.fingerprint != fingerprint:
                        raise SimulatorError(
                            400,
                            "DuplicateIdempotencyKey",
                            "The idempotency key was already used for a different request",
                        )
                    entry["fault"] = "replay"
                    if operation == "CreateCheckoutSession":
                        entry["checkout_session_id"] = previous.body.get("checkoutSessionId")
                    return _Answer(previous.status, previous.body, {}, fault)
            try:
                status, result = self._execute(
                    operation,
                    caller.environment,
                    object_id,
                    payload,
                    base_url=base_url,
                    force_pending=fault is not None and fault.kind == "pending",
                    simulation=simulation,
                )
                answer = _Answer(status, result, {}, fault)
            except SimulatorError as error:
                answer = _Answer(error.status, error.body(), {}, fault)
            if operation == "CreateCheckoutSession":
                entry["checkout_session_id"] = answer.body.get("checkoutSessionId")
            if stored_key is not None and answer.status < 500:
                self._idempotency[stored_key] = _Stored(fingerprint, answer.status, answer.body)
            self._flush_events(base_url)
            return answer

    def _take_fault(self, operation: str, object_id: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.operation != operation or fault.count <= 0:
                continue
            if fault.checkout_session_id is not None and fault.checkout_session_id != object_id:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _execute(
        self,
        operation: str,
        env: str,
        object_id: str | None,
        payload: Any,
        *,
        base_url: str,
        force_pending: bool,
        simulation: str | None = None,
    ) -> tuple[int, JSONObject]:
        store = self._store
        status = _SUCCESS_STATUS.get(operation, 200)
        oid = object_id or ""
        if operation == "CreateCheckoutSession":
            return status, store.create_session(env, payload, hosted_base_url=base_url)
        if operation == "GetCheckoutSession":
            return status, store.get_session(env, oid)
        if operation == "UpdateCheckoutSession":
            return status, store.update_session(env, oid, payload, hosted_base_url=base_url)
        if operation == "CompleteCheckoutSession":
            return store.complete_session(
                env, oid, payload, force_pending=force_pending, simulation=simulation
            )
        if operation == "GetChargePermission":
            return status, store.get_permission(env, oid)
        if operation == "UpdateChargePermission":
            return status, store.update_permission(env, oid, payload)
        if operation == "CloseChargePermission":
            return status, store.close_permission(env, oid, payload, simulation=simulation)
        if operation == "CreateCharge":
            return status, store.create_charge(env, payload, simulation=simulation)
        if operation == "GetCharge":
            return status, store.get_charge(env, oid)
        if operation == "CaptureCharge":
            return status, store.capture_charge(env, oid, payload)
        if operation == "CancelCharge":
            return status, store.cancel_charge(env, oid, payload)
        if operation == "CreateRefund":
            return status, store.create_refund(env, payload)
        if operation == "GetRefund":
            return status, store.get_refund(env, oid)
        raise SimulatorError(404, "ResourceNotFound", f"unknown operation {operation}")

    def _flush_events(self, base_url: str | None) -> None:
        events = self._store.drain_events()
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

    # --------------------------------------------------- pages + control API

    def _build_pages(self) -> Flask:
        app = Flask(
            "amazonpay.simulator",
            root_path=str(_HERE),
            static_folder="static",
            static_url_path="/_simulator-static",
            template_folder="templates",
        )
        _register_pages(app, self)
        _register_control(app, self)
        return app


def _start_ticker(simulator: Simulator) -> None:
    """Apply due time-driven changes without waiting for a request, so IPNs go out on time.

    Holds only a weak reference: the thread ends once the simulator is garbage.
    """
    ref = weakref.ref(simulator)

    def run() -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            sim = ref()
            if sim is None:
                return
            with sim._lock:
                sim._store.tick()
                sim._flush_events(sim.base_url)
            del sim

    threading.Thread(target=run, name="amazon-pay-simulator-clock", daemon=True).start()


def _not_found(path: str) -> JSONObject:
    return {"reasonCode": "ResourceNotFound", "message": f"No resource at {path}"}


def environ_raw_path(environ: Mapping[str, Any]) -> str:
    """The path exactly as the client sent it (section 1.3), before any percent-decoding."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw:
        if "://" in raw:  # absolute-form request target
            raw = urlsplit(raw).path or "/"
        return raw.split("?", 1)[0]
    path = environ.get("PATH_INFO", "/")
    # WSGI gives PATH_INFO as latin-1-decoded bytes; re-quote it to get the wire form back.
    return quote(str(path).encode("latin-1").decode("utf-8", "replace"), safe="/-_.~!$&'()*+,;=:@%")


def _register_pages(app: Flask, sim: Simulator) -> None:
    """checkout.js, the button's form target and the hosted buyer page (section 3, 11)."""
    script = (_HERE / "static" / "checkout.js").read_text(encoding="utf-8")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("x-amz-pay-request-id", str(uuid.uuid4()))
        if response.mimetype == "text/html":
            # No form-action: the buyer's choice redirects to the shop's return URL.
            response.headers["content-security-policy"] = (
                "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'"
            )
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)  # keeps browsers' automatic favicon request quiet

    @app.get("/checkout.js")
    def checkout_js() -> Response:
        origin = request.host_url.rstrip("/")
        body = script.replace("__SIMULATOR_ORIGIN__", json.dumps(origin)[1:-1])
        response = Response(body, mimetype="application/javascript")
        response.headers["cache-control"] = "no-cache"
        return response

    def error_page(status: int, title: str, message: str) -> tuple[str, int]:
        return render_template("error.html", title=title, message=message), status

    @app.post("/checkout/start")
    def button_checkout() -> Any:
        # The button's top-level form POST: verify the static signature over the exact
        # payloadJSON (section 3) and create the session from it.
        form = request.form
        payload_json = form.get("payloadJSON", "")
        signature = form.get("signature", "")
        key_id = form.get("publicKeyId", "")
        algorithm_name = form.get("algorithm") or signing.Algorithm.PSS.value
        entry: JSONObject = {
            "operation": "ButtonCheckout",
            "method": "POST",
            "path": request.path,
            "checkout_session_id": None,
            "idempotency_key": None,
            "status": 400,
            "fault": None,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        try:
            try:
                algorithm = signing.Algorithm.parse(algorithm_name)
            except ValueError:
                return error_page(400, "Unknown algorithm", f"{algorithm_name} is not supported.")
            public_key = sim.public_keys.get(key_id)
            if public_key is None:
                return error_page(400, "Unknown public key", "The publicKeyId is not registered.")
            if not signing.verify_button_signature(public_key, payload_json, signature, algorithm):
                return error_page(
                    400,
                    "Invalid button signature",
                    "The signature does not match payloadJSON. No Checkout Session was created.",
                )
            try:
                payload = json.loads(payload_json)
            except ValueError:
                return error_page(400, "Invalid payload", "payloadJSON is not valid JSON.")
            web = payload.get("webCheckoutDetails") if isinstance(payload, dict) else None
            if not isinstance(web, dict) or not web.get("checkoutResultReturnUrl"):
                return error_page(
                    400,
                    "Invalid payload",
                    "webCheckoutDetails.checkoutResultReturnUrl is required.",
                )
            if web.get("checkoutMode") != "ProcessOrder":
                return error_page(
                    400,
                    "Invalid payload",
                    'webCheckoutDetails.checkoutMode must be "ProcessOrder".',
                )
            env = key_environment(key_id) or (
                SANDBOX if form.get("sandbox", "true").lower() != "false" else LIVE
            )
            with sim._lock:
                try:
                    session = sim._store.create_session(
                        env, payload, hosted_base_url=request.host_url.rstrip("/")
                    )
                except SimulatorError as error:
                    return error_page(400, "Invalid payload", error.message)
            entry["checkout_session_id"] = session["checkoutSessionId"]
            entry["status"] = 303
            return app.redirect(f"/hosted/{session['checkoutSessionId']}", code=303)
        finally:
            sim._record(entry)

    @app.get("/hosted/<session_id>")
    def hosted_page(session_id: str) -> Any:
        with sim._lock:
            sim._store.tick()
            session = sim._store.session_for_buyer(session_id)
        if session is None:
            return error_page(404, "Unknown checkout", "This checkout does not exist.")
        return render_template(
            "hosted.html",
            session=session,
            methods=PAYMENT_METHODS,
            merchant_id=sim.merchant_id,
        )

    @app.post("/hosted/<session_id>/choose")
    def hosted_choose(session_id: str) -> Any:
        choice = request.form.get("method", "")
        outcome = "BuyerCanceled" if choice == "cancel" else PAYMENT_METHODS.get(choice)
        if outcome is None:
            return error_page(400, "Unknown payment method", "Choose one of the listed methods.")
        try:
            session = sim.set_buyer_outcome(session_id, outcome)
        except SimulatorError as error:
            return error_page(error.status, "Checkout not possible", error.message)
        sim._record(
            {
                "operation": "BuyerChoice",
                "method": "POST",
                "path": request.path,
                "checkout_session_id": session_id,
                "idempotency_key": None,
                "status": 303,
                "fault": None,
                "timestamp": datetime.now(UTC).isoformat(),
                "outcome": outcome,
            }
        )
        web = session["webCheckoutDetails"]
        target = web.get("checkoutResultReturnUrl") or web.get("checkoutReviewReturnUrl")
        if not target:
            return error_page(200, "Done", "The checkout has no return URL to go back to.")
        return app.redirect(append_session_id(target, session_id), code=303)


def _register_control(app: Flask, sim: Simulator) -> None:
    """The unauthenticated test/dev control API (documented in README.md)."""

    def bad(message: str, status: int = 400) -> tuple[Response, int]:
        return jsonify({"reasonCode": "InvalidParameterValue", "message": message}), status

    def body() -> dict[str, Any]:
        data = request.get_json(force=True, silent=True)
        return data if isinstance(data, dict) else {}

    @app.errorhandler(SimulatorError)
    def _simulator_error(error: SimulatorError) -> tuple[Response, int]:
        return jsonify(error.body()), error.status

    @app.errorhandler(404)
    def _missing(_error: Exception) -> tuple[Response, int]:
        return jsonify(_not_found(request.path)), 404

    @app.errorhandler(405)
    def _method(_error: Exception) -> tuple[Response, int]:
        message = f"{request.method} is not supported on {request.path}"
        return jsonify({"reasonCode": "UnsupportedOperation", "message": message}), 405

    @app.errorhandler(Exception)
    def _bug(error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return error
        log.exception("simulator bug", exc_info=error)
        body = {"reasonCode": "InternalServerError", "message": "Internal simulator error"}
        return jsonify(body), 500

    @app.get("/_simulator/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/_simulator/sns-cert.pem")
    def sns_cert() -> Response:
        return Response(sim.certificate.pem, mimetype="application/x-pem-file")

    @app.post("/_simulator/faults")
    def add_fault() -> Any:
        data = body()
        operation = data.get("operation")
        kind = data.get("kind", "status")
        if operation not in OPERATIONS:
            return bad(f"operation must be one of {', '.join(OPERATIONS)}")
        if kind not in _FAULT_KINDS:
            return bad(f"kind must be one of {', '.join(_FAULT_KINDS)}")
        if kind == "pending" and operation != "CompleteCheckoutSession":
            return bad("kind 'pending' only applies to CompleteCheckoutSession")
        try:
            count = int(data.get("count", 1))
            status = int(data.get("status", 429 if data.get("retry_after") else 503))
            retry_after = data.get("retry_after")
            retry_after = None if retry_after is None else int(retry_after)
            delay_ms = int(data.get("delay_ms", 0))
        except (TypeError, ValueError):
            return bad("count, status, retry_after and delay_ms must be integers")
        if count < 1 or not 400 <= status <= 599 or delay_ms < 0:
            return bad("count must be >= 1, status 4xx/5xx, delay_ms >= 0")
        session_id = data.get("checkout_session_id")
        fault = Fault(
            operation=operation,
            kind=kind,
            count=count,
            status=status,
            retry_after=retry_after,
            delay_ms=delay_ms,
            checkout_session_id=str(session_id) if session_id else None,
        )
        sim.add_fault(fault)
        return jsonify(fault.to_json()), 201

    @app.get("/_simulator/faults")
    def list_faults() -> Response:
        with sim._lock:
            return jsonify([f.to_json() for f in sim._faults])

    @app.get("/_simulator/requests")
    def requests_log() -> Response:
        return jsonify(sim.request_log())

    @app.post("/_simulator/reset")
    def reset() -> Response:
        sim.reset(data=bool(body().get("data", False)))
        return jsonify({"status": "reset"})

    @app.post("/_simulator/clock")
    def clock() -> Any:
        try:
            seconds = float(body().get("advance_seconds", 0))
        except (TypeError, ValueError):
            return bad("advance_seconds must be a number")
        if seconds < 0:
            return bad("the clock only moves forward")
        now = sim.advance_clock(seconds)
        return jsonify({"now": now.strftime("%Y%m%dT%H%M%SZ")})

    @app.post("/_simulator/throttling")
    def throttling() -> Response:
        sim.throttling = bool(body().get("enabled", True))
        return jsonify({"throttling": sim.throttling})

    @app.post("/_simulator/sessions/<session_id>/outcome")
    def session_outcome(session_id: str) -> Any:
        outcome = body().get("outcome")
        if outcome not in OUTCOMES:
            return bad(f"outcome must be one of {', '.join(OUTCOMES)}")
        return jsonify(sim.set_buyer_outcome(session_id, outcome))

    @app.post("/_simulator/charges/<charge_id>/outcome")
    def charge_outcome(charge_id: str) -> Any:
        outcome = str(body().get("outcome", ""))
        with sim._lock:
            sim._store.tick()
            charge = sim._store.set_charge_outcome(charge_id, outcome)
            sim._flush_events(request.host_url.rstrip("/"))
        return jsonify(charge)

    @app.post("/_simulator/charge-permissions/<permission_id>/state")
    def permission_state(permission_id: str) -> Any:
        data = body()
        reason = data.get("reason_code")
        with sim._lock:
            permission = sim._store.set_permission_state(
                permission_id, str(data.get("state", "")), str(reason) if reason else None
            )
            sim._flush_events(request.host_url.rstrip("/"))
        return jsonify(permission)
