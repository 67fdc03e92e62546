"""AmazonPayClient: signed Amazon Pay API v2 calls over one pooled HTTP session.

URLs per region and environment, signed headers, idempotency keys, timeouts, retries with
full-jitter backoff, and responses mapped to models or typed errors (docs/amazon-pay-api.md
sections 1, 2, 5, 7 and 8).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import platform
import random
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, overload
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions
from cryptography.hazmat.primitives.asymmetric import rsa
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool

from amazonpay import signing
from amazonpay.errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    ServiceError,
    error_class,
)
from amazonpay.models import (
    Channel,
    Charge,
    ChargeInitiator,
    ChargePermission,
    CheckoutSession,
    CompleteResult,
    Price,
    Refund,
)
from amazonpay.regions import api_host, checkout_js_url, normalize_region

__all__ = [
    "RETRYABLE_STATUSES",
    "USER_AGENT",
    "AmazonPayClient",
    "CallObserver",
    "CallRecord",
    "RetryPolicy",
    "api_host",
    "backoff_delay",
    "checkout_js_url",
    "idempotency_key_for",
    "normalize_region",
    "parse_retry_after",
    "should_retry",
    "validate_idempotency_key",
]

logger = logging.getLogger("amazonpay")

__version__ = "0.1.0"
USER_AGENT = (
    f"amazonpay-flask/{__version__} (Python/{platform.python_version()};"
    f" requests/{requests.__version__})"
)

# Section 8: the statuses every official SDK retries.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Section 7: at most 32 characters of a-z, A-Z, 0-9, `-` and `_`.
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PUBLIC_KEY_ID = re.compile(r"^[^\s,=]+$")

_JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}
_SIGNED_GET = tuple(
    sorted([*_JSON_HEADERS, "x-amz-pay-date", "x-amz-pay-host", "x-amz-pay-region"])
)
_SIGNED_POST = tuple(sorted([*_SIGNED_GET, "x-amz-pay-idempotency-key"]))


def validate_idempotency_key(key: str) -> str:
    """Return the key if Amazon accepts it (section 7), else raise ValueError."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.match(key):
        raise ValueError("idempotency key must be 1-32 characters of A-Z, a-z, 0-9, '-' and '_'")
    return key


def idempotency_key_for(seed: str) -> str:
    """A stable 32-character key derived from a seed, so a replay sends the same key (section 7).

    A UUID (e.g. a checkoutSessionId) gives its 32 hex digits without dashes, as the SDKs do;
    any other seed gives the first 32 hex digits of its SHA-256.
    """
    try:
        return uuid.UUID(seed).hex
    except (ValueError, TypeError, AttributeError):
        return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: attempts include the first one; times are seconds."""

    max_attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0
    max_total: float = 15.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_total < 0:
            raise ValueError("retry delays must not be negative")


@dataclass(frozen=True)
class CallRecord:
    """One attempt of one API call, as an observer (metrics) sees it. Never ids or amounts.

    `status` is None when no response came back; `error` then names the exception class.
    `duration` is this attempt's own time in seconds; `will_retry` says another attempt follows.
    `request_id` is Amazon's x-amz-pay-request-id, for logs only (it is unique per call).
    """

    operation: str
    method: str
    attempt: int
    status: int | None
    error: str | None
    duration: float
    will_retry: bool
    request_id: str | None

    @property
    def status_class(self) -> str:
        """`2xx`, `4xx`, `5xx`... or `none` when Amazon did not answer."""
        return "none" if self.status is None else f"{self.status // 100}xx"


CallObserver = Callable[[CallRecord], None]


class _Uniform(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


def should_retry(
    method: str,
    status: int | None,
    *,
    has_idempotency_key: bool,
    attempt: int,
    policy: RetryPolicy,
) -> bool:
    """Whether to try again after `attempt` (1-based) ended with `status` (None: no response).

    A POST is only replayed with an idempotency key, because Amazon then returns the saved first
    result instead of acting twice (section 7). GET, PATCH and DELETE are idempotent by definition.
    """
    if attempt >= policy.max_attempts:
        return False
    if method.upper() == "POST" and not has_idempotency_key:
        return False
    return status is None or status in RETRYABLE_STATUSES


def backoff_delay(
    attempt: int, policy: RetryPolicy, retry_after: float | None, rng: _Uniform
) -> float:
    """Seconds to wait after failed `attempt` (1-based).

    The server's Retry-After wins when present: we never come back sooner than asked, and the
    caller gives up instead when that wait would overrun `max_total` (the cap). Otherwise full
    jitter: uniform in
    [0, min(max_delay, base_delay * 2^(attempt-1))], which spreads simultaneous clients apart
    better than a fixed schedule.
    """
    if retry_after is not None:
        return max(retry_after, 0.0)
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max((moment - now).total_seconds(), 0.0)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _never_left(exc: BaseException) -> bool:
    """True when a requests error provably happened before the request was sent.

    requests wraps urllib3's errors: a refused connection or DNS failure arrives as
    ConnectionError(MaxRetryError(reason=NewConnectionError)), a connect timeout as ConnectTimeout.
    Anything else (read timeout, reset, remote disconnect, broken chunked body) may have reached
    Amazon, so we report it as possibly applied.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        return False
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        if isinstance(current, urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            stack.append(current.reason)
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        if current.__cause__ is not None:
            stack.append(current.__cause__)
    return False


def _json_default(value: object) -> Any:
    if isinstance(value, Price):
        return value.to_json()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_body(payload: Mapping[str, Any]) -> bytes:
    # Compact and non-ASCII-escaped; we sign exactly these bytes (section 1.6).
    return json.dumps(
        payload, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode("utf-8")


def _path_id(value: str, what: str) -> str:
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise ValueError(f"{what} must be a non-empty id")
    return quote(value, safe="")


def _parse_endpoint(endpoint: str) -> tuple[str, str]:
    """`scheme://host[:port]` -> (origin without trailing slash, host name without port)."""
    try:
        parts = urlsplit(endpoint.strip())
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except (ValueError, AttributeError):
        raise ConfigurationError(f"endpoint {endpoint!r} is not a valid URL") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            f"endpoint {endpoint!r} must look like scheme://host[:port] with http or https"
        )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}", host


def _load_key(private_key: rsa.RSAPrivateKey | bytes | str) -> rsa.RSAPrivateKey:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key
    if isinstance(private_key, str):
        private_key = private_key.encode("utf-8")
    if not isinstance(private_key, bytes):
        raise ConfigurationError("private_key must be an RSA private key object or PEM bytes")
    try:
        return signing.load_private_key(private_key)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm... depending on the input
        # Never echo the key material; `from None` keeps cryptography's details out of tracebacks.
        raise ConfigurationError(
            "private_key could not be loaded: expected an unencrypted PEM RSA private key"
        ) from None


class _OriginPoolAdapter(HTTPAdapter):
    """An HTTPAdapter that keeps each origin's urllib3 pool at hand while no proxy applies.

    HTTPAdapter looks the pool up again for every request (select_proxy, urlparse, the pool key;
    bench/profile_return.py: about half a signature per return of two calls). Without proxies
    the answer for an origin and TLS setting stays the same pool until the adapter is closed
    (or the manager drops it for other origins: we never hold more than it keeps), so we reuse
    it until then. `send` stays HTTPAdapter's own: the request on the wire, and `responses`'
    patch of it, are unchanged.
    """

    _pools: dict[tuple[str, bool | str | None, str | tuple[str, str] | None], HTTPConnectionPool]
    _max_pools: int

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        # Also runs on unpickling: a new pool manager means none of the old pools.
        self._pools = {}
        self._max_pools = connections  # the manager keeps this many pools, most recent first
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def close(self) -> None:
        # urllib3 2 closes a pool's connections once nothing refers to it; the manager lets go
        # of its pools here, and so must we.
        self._pools.clear()
        super().close()

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: str | tuple[str, str] | None = None,
    ) -> ConnectionPool:
        url = request.url
        if proxies or not isinstance(url, str) or not isinstance(cert, str | tuple | None):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        # requests always gives a prepared URL a path, so the origin ends at its first `/`.
        end = url.find("/", url.find("://") + 3)
        key = (url if end < 0 else url[:end], verify, cert)
        pool = self._pools.get(key)
        if pool is not None and pool.pool is not None:  # `pool.pool` is None once it is closed
            return pool
        fresh = super().get_connection_with_tls_context(request, verify, proxies, cert)
        if isinstance(fresh, HTTPConnectionPool):
            if len(self._pools) >= self._max_pools:
                self._pools.clear()
            self._pools[key] = fresh
        return fresh

    def request_url(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> str:
        # What HTTPAdapter answers without proxies, minus its two URL parses to find that out.
        if proxies:
            return super().request_url(request, proxies)
        return request.path_url


class AmazonPayClient:
    """A thread-safe Amazon Pay API v2 client. Build one per process and share it.

    The private key is parsed once here (about 40 ms; section 15); per call we only sign.
    No per-call state is stored on the instance, so threads may call it concurrently.
    """

    def __init__(
        self,
        *,
        public_key_id: str,
        private_key: rsa.RSAPrivateKey | bytes,
        region: str = "na",
        sandbox: bool = True,
        endpoint: str | None = None,
        algorithm: signing.Algorithm | str = signing.Algorithm.PSS_V2,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: CallObserver | None = None,
    ) -> None:
        """`observer`, when given, is called once per attempt with its CallRecord (metrics).

        It runs on the calling thread before the call returns or retries, so it must be quick
        and must not raise.
        """
        if not isinstance(public_key_id, str) or not _PUBLIC_KEY_ID.match(public_key_id):
            raise ConfigurationError(
                "public_key_id must be a non-empty id without spaces or commas"
            )
        try:
            self._algorithm = (
                signing.Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
            )
        except ValueError:
            raise ConfigurationError(f"unknown signature algorithm {algorithm!r}") from None
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigurationError("timeouts must be positive")
        self._public_key_id = public_key_id
        self._private_key = _load_key(private_key)
        self._region = normalize_region(region)
        self._sandbox = bool(sandbox)

        if endpoint is None:
            self._origin = f"https://{api_host(self._region)}"
            self._host = api_host(self._region)
        else:
            self._origin, self._host = _parse_endpoint(endpoint)
        # Section 1.11: a LIVE-/SANDBOX- key id carries its environment, so the path has none.
        if public_key_id.upper().startswith(("LIVE", "SANDBOX")):
            self._path_prefix = "/v2"
        else:
            self._path_prefix = "/sandbox/v2" if self._sandbox else "/live/v2"

        self._timeout = (float(connect_timeout), float(read_timeout))
        self._retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._observer = observer
        self._rng = random.Random()  # noqa: S311 - jitter, not security

        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # Our own retry loop decides; urllib3 must not silently replay requests.
            adapter = _OriginPoolAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        # Headers that never change for this client, built once (section 1.5).
        self._static_headers = {
            **_JSON_HEADERS,
            "x-amz-pay-host": self._host,
            "x-amz-pay-region": self._region,
        }
        # The session's own default headers (Accept-Encoding, Connection, ...) go out unsigned.
        self._unsigned_headers = {
            k.lower(): v if isinstance(v, str) else v.decode("latin-1")
            for k, v in session.headers.items()
        }
        self._unsigned_headers.pop("accept", None)
        self._unsigned_headers["user-agent"] = USER_AGENT
        for header in self._unsigned_headers.items():
            check_header_validity(header)  # what PreparedRequest.prepare would check per call
        # The origin as requests normalises a URL (lower-case host, IDNA); paths we append are
        # percent-encoded ASCII already, so a call's URL needs no per-call parsing (see _send).
        probe = requests.PreparedRequest()
        probe.prepare_url(self._origin + "/", None)
        assert probe.url is not None
        self._prepared_origin = probe.url[:-1]
        # Proxy, TLS-verify and client-cert settings come from the session and the environment.
        # requests re-reads os.environ on every Session.request (about 0.4 ms, a third of our
        # per-call CPU); every call goes to the same origin, so we resolve them once, like the
        # rest of our settings. A caller's session also lends its adapters and default headers;
        # its auth and cookies are not used (Amazon authenticates by signature).
        self._send_settings: dict[str, Any] = dict(
            session.merge_environment_settings(self._origin + "/", {}, False, None, None)
        )

    # -- properties -----------------------------------------------------------------------

    @property
    def public_key_id(self) -> str:
        return self._public_key_id

    @property
    def algorithm(self) -> signing.Algorithm:
        return self._algorithm

    @property
    def region(self) -> str:
        return self._region

    @property
    def base_url(self) -> str:
        """Origin plus environment/version prefix, e.g. `https://pay-api.amazon.com/sandbox/v2`."""
        return self._origin + self._path_prefix

    def close(self) -> None:
        """Close the pooled connections if the session is ours."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> AmazonPayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def sign_button_payload(self, payload_json: str) -> str:
        """`createCheckoutSessionConfig.signature` over the exact payload text (section 3)."""
        return signing.sign_button_payload(self._private_key, payload_json, self._algorithm)

    # -- Checkout Session (section 5.1) ---------------------------------------------------

    def create_checkout_session(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> CheckoutSession:
        data, _ = self._call(
            "create_checkout_session", "POST", "/checkoutSessions", payload, idempotency_key
        )
        return CheckoutSession.from_json(data)

    def get_checkout_session(self, checkout_session_id: str) -> CheckoutSession:
        path = f"/checkoutSessions/{_path_id(checkout_session_id, 'checkout_session_id')}"
        data, _ = self._call("get_checkout_session", "GET", path)
        return CheckoutSession.from_json(data)

    def update_checkout_session(
        self, checkout_session_id: str, payload: Mapping[str, Any]
    ) -> CheckoutSession:
        path = f"/checkoutSessions/{_path_id(checkout_session_id, 'checkout_session_id')}"
        data, _ = self._call("update_checkout_session", "PATCH", path, payload)
        return CheckoutSession.from_json(data)

    def complete_checkout_session(
        self,
        checkout_session_id: str,
        charge_amount: Price | None = None,
        *,
        total_order_amount: Price | None = None,
        idempotency_key: str | None = None,
    ) -> CompleteResult:
        """Complete after the buyer's return (section 5.2); `{}` body for setup-only sessions.

        Pass `idempotency_key=idempotency_key_for(checkout_session_id)` to make a page refresh
        replay the first answer instead of failing with InvalidCheckoutSessionStatus (section 7).
        """
        body: dict[str, Any] = {}
        if charge_amount is not None:
            body["chargeAmount"] = charge_amount.to_json()
        if total_order_amount is not None:
            body["totalOrderAmount"] = total_order_amount.to_json()
        path = f"/checkoutSessions/{_path_id(checkout_session_id, 'checkout_session_id')}/complete"
        data, status = self._call("complete_checkout_session", "POST", path, body, idempotency_key)
        return CompleteResult(CheckoutSession.from_json(data), authorization_pending=status == 202)

    # -- Charge Permission ----------------------------------------------------------------

    def get_charge_permission(self, charge_permission_id: str) -> ChargePermission:
        path = f"/chargePermissions/{_path_id(charge_permission_id, 'charge_permission_id')}"
        data, _ = self._call("get_charge_permission", "GET", path)
        return ChargePermission.from_json(data)

    def update_charge_permission(
        self, charge_permission_id: str, payload: Mapping[str, Any]
    ) -> ChargePermission:
        path = f"/chargePermissions/{_path_id(charge_permission_id, 'charge_permission_id')}"
        data, _ = self._call("update_charge_permission", "PATCH", path, payload)
        return ChargePermission.from_json(data)

    def close_charge_permission(
        self, charge_permission_id: str, closure_reason: str, cancel_pending_charges: bool = False
    ) -> ChargePermission:
        """Close a Charge Permission for good, e.g. remove a saved wallet (section 6).

        Pending charges are canceled only with `cancel_pending_charges=True`.
        """
        path = f"/chargePermissions/{_path_id(charge_permission_id, 'charge_permission_id')}/close"
        body = {"closureReason": closure_reason, "cancelPendingCharges": cancel_pending_charges}
        data, _ = self._call("close_charge_permission", "DELETE", path, body)
        return ChargePermission.from_json(data)

    # -- Charge ---------------------------------------------------------------------------

    @overload
    def create_charge(
        self,
        charge_permission_id: str,
        charge_amount: Price,
        *,
        capture_now: bool,
        can_handle_pending_authorization: bool,
        charge_initiator: ChargeInitiator,
        channel: Channel,
        merchant_reference_id: str | None,
        idempotency_key: str,
        soft_descriptor: str | None = None,
    ) -> Charge: ...

    @overload
    def create_charge(
        self, charge_permission_id: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Charge: ...

    def create_charge(self, *args: Any, **kwargs: Any) -> Charge:
        """Charge a Charge Permission, e.g. a saved wallet (sections 5.1 and 6).

        The idempotency key must come from the caller's own reference, so every replay of the
        same order sends the same request (section 7). A decline raises DeclinedError; a
        permission that is not Chargeable raises InvalidChargePermissionStatus.

        The raw-payload form `create_charge(payload, idempotency_key=None)` is deprecated and
        kept only until its last caller (tests/simulator/test_with_client.py) moves.
        """
        if args and isinstance(args[0], Mapping):
            warnings.warn(
                "create_charge(payload) is deprecated; pass the typed arguments",
                DeprecationWarning,
                stacklevel=2,
            )
            return self._create_charge_from_payload(*args, **kwargs)
        return self._create_charge(*args, **kwargs)

    def _create_charge(
        self,
        charge_permission_id: str,
        charge_amount: Price,
        *,
        capture_now: bool,
        can_handle_pending_authorization: bool,
        charge_initiator: ChargeInitiator,
        channel: Channel,
        merchant_reference_id: str | None,
        idempotency_key: str,
        soft_descriptor: str | None = None,
    ) -> Charge:
        # Required, never generated here: only a key from the caller's reference makes a replay
        # after a crash or a second submit return the first charge instead of a new one.
        validate_idempotency_key(idempotency_key)
        body: dict[str, Any] = {
            "chargePermissionId": charge_permission_id,
            "chargeAmount": charge_amount.to_json(),
            "captureNow": capture_now,
            "canHandlePendingAuthorization": can_handle_pending_authorization,
            "chargeInitiator": ChargeInitiator(charge_initiator).value,
            "channel": Channel(channel).value,
        }
        if merchant_reference_id is not None:
            body["merchantMetadata"] = {"merchantReferenceId": merchant_reference_id}
        if soft_descriptor is not None:
            body["softDescriptor"] = soft_descriptor
        data, _ = self._call("create_charge", "POST", "/charges", body, idempotency_key)
        return Charge.from_json(data)

    def _create_charge_from_payload(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Charge:
        data, _ = self._call("create_charge", "POST", "/charges", payload, idempotency_key)
        return Charge.from_json(data)

    def get_charge(self, charge_id: str) -> Charge:
        data, _ = self._call("get_charge", "GET", f"/charges/{_path_id(charge_id, 'charge_id')}")
        return Charge.from_json(data)

    def capture_charge(
        self,
        charge_id: str,
        capture_amount: Price,
        soft_descriptor: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Charge:
        """Capture an Authorized charge, all or part of it (section 5.1).

        Pass the idempotency key derived from your own reference (section 7); omitting it is
        deprecated (see _required_key). A Charge in another state raises InvalidChargeStatus,
        an amount over the authorization TransactionAmountExceeded.
        """
        idempotency_key = _required_key("capture_charge", idempotency_key)
        body: dict[str, Any] = {"captureAmount": capture_amount.to_json()}
        if soft_descriptor is not None:
            body["softDescriptor"] = soft_descriptor
        path = f"/charges/{_path_id(charge_id, 'charge_id')}/capture"
        data, _ = self._call("capture_charge", "POST", path, body, idempotency_key)
        return Charge.from_json(data)

    def cancel_charge(self, charge_id: str, cancellation_reason: str) -> Charge:
        """Cancel a charge that is not captured yet; a DELETE, so no idempotency key (section 7)."""
        path = f"/charges/{_path_id(charge_id, 'charge_id')}/cancel"
        body = {"cancellationReason": cancellation_reason}
        data, _ = self._call("cancel_charge", "DELETE", path, body)
        return Charge.from_json(data)

    # -- Refund ---------------------------------------------------------------------------

    def create_refund(
        self,
        charge_id: str,
        refund_amount: Price,
        soft_descriptor: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Refund all or part of a Captured charge (section 5.1).

        Pass the idempotency key derived from your own reference (section 7); omitting it is
        deprecated (see _required_key). More than is left to refund raises
        TransactionAmountExceeded, a charge that is not Captured InvalidChargeStatus.
        """
        idempotency_key = _required_key("create_refund", idempotency_key)
        body: dict[str, Any] = {"chargeId": charge_id, "refundAmount": refund_amount.to_json()}
        if soft_descriptor is not None:
            body["softDescriptor"] = soft_descriptor
        data, _ = self._call("create_refund", "POST", "/refunds", body, idempotency_key)
        return Refund.from_json(data)

    def get_refund(self, refund_id: str) -> Refund:
        data, _ = self._call("get_refund", "GET", f"/refunds/{_path_id(refund_id, 'refund_id')}")
        return Refund.from_json(data)

    # -- the wire -------------------------------------------------------------------------

    def _signed_headers(
        self, method: str, path: str, body: bytes, idempotency_key: str | None
    ) -> dict[str, str]:
        """Fresh date and signature for one attempt (sections 1.2-1.10)."""
        headers = dict(self._static_headers)
        headers["x-amz-pay-date"] = signing.format_amz_date(self._now())
        if idempotency_key is not None:
            headers["x-amz-pay-idempotency-key"] = idempotency_key
            names = _SIGNED_POST
        else:
            names = _SIGNED_GET
        canonical = signing.canonical_request(method, path, "", headers, names, body)
        to_sign = signing.string_to_sign(self._algorithm, canonical)
        signature = signing.sign(self._private_key, to_sign, self._algorithm)
        headers["authorization"] = signing.authorization_header(
            self._algorithm, self._public_key_id, ";".join(names), signature
        )
        # user-agent and the session defaults are unsigned, as in the PHP/Java/.NET SDKs (1.5).
        return {**self._unsigned_headers, **headers}

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> requests.Response:
        """One HTTP exchange on the pooled session with the settings resolved at construction.

        What `PreparedRequest.prepare` and `Session.send` would do for this request, without
        their per-call work that cannot change anything here (about a third of the client's
        CPU per call): the URL is our normalised origin plus a percent-encoded ASCII path, the
        signed headers are ours and the session's were checked once, there are no cookies, auth
        or hooks to apply, and redirects are not followed. The session's adapter still sends it
        (`responses` and callers' mounted adapters see the same PreparedRequest and kwargs).
        """
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = url
        prepared.headers = CaseInsensitiveDict(headers)
        if body:
            prepared.body = body
            prepared.headers["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD"):
            prepared.headers["Content-Length"] = "0"
        adapter = self._session.get_adapter(url)
        response = adapter.send(prepared, timeout=self._timeout, **self._send_settings)
        if not self._send_settings.get("stream"):
            response.content  # noqa: B018 - read the body now and give the connection back
        return response

    def _call(
        self,
        operation: str,
        method: str,
        resource: str,
        payload: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Mapping[str, Any], int]:
        """Send with retries; return the JSON object and the status, or raise a typed error."""
        if method == "POST":
            # Every POST carries a key so a retry can never apply twice (sections 7 and 8).
            idempotency_key = (
                uuid.uuid4().hex
                if idempotency_key is None
                else validate_idempotency_key(idempotency_key)
            )
        elif idempotency_key is not None:
            validate_idempotency_key(idempotency_key)
        body = b"" if payload is None else _encode_body(payload)
        path = self._path_prefix + resource
        url = self._prepared_origin + path
        start = self._monotonic()
        may_have_been_applied = False
        attempt = 0
        while True:
            attempt += 1
            headers = self._signed_headers(method, path, body, idempotency_key)
            sent = self._monotonic()
            try:
                response = self._send(method, url, headers, body)
            except requests.RequestException as exc:
                applied_now = not _never_left(exc)
                may_have_been_applied = may_have_been_applied or applied_now
                finished = self._monotonic()
                elapsed = finished - start
                delay = self._retry_delay(
                    method=method,
                    status=None,
                    idempotency_key=idempotency_key,
                    attempt=attempt,
                    elapsed=elapsed,
                    retry_after=None,
                )
                logger.warning(
                    "amazonpay %s: no response (%s, may have been applied: %s)"
                    " attempt=%d elapsed_ms=%.0f",
                    operation,
                    type(exc).__name__,
                    applied_now,
                    attempt,
                    elapsed * 1000,
                    extra={"amazon_operation": operation},
                )
                self._observe(
                    CallRecord(
                        operation,
                        method,
                        attempt,
                        None,
                        type(exc).__name__,
                        finished - sent,
                        delay is not None,
                        None,
                    )
                )
                if delay is None:
                    raise APIConnectionError(
                        f"{operation}: no response from Amazon Pay after {attempt} attempt(s):"
                        f" {type(exc).__name__}",
                        may_have_been_applied=may_have_been_applied,
                    ) from exc
                self._sleep(delay)
                continue

            status = response.status_code
            request_id = response.headers.get("x-amz-pay-request-id")
            finished = self._monotonic()
            elapsed = finished - start
            if 200 <= status < 300:
                # DEBUG, not INFO: a line per successful call was a signature's worth of CPU
                # per return (bench/profile_return.py). Amazon's request id stays in the
                # observer's record, in every error's line and in the raised error.
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "amazonpay %s: status=%d request_id=%s attempt=%d elapsed_ms=%.0f",
                        operation,
                        status,
                        request_id,
                        attempt,
                        elapsed * 1000,
                        extra={"amazon_operation": operation, "amazon_request_id": request_id},
                    )
                self._observe(
                    CallRecord(
                        operation, method, attempt, status, None, finished - sent, False, request_id
                    )
                )
                return _json_object(response, request_id), status

            retry_after = parse_retry_after(response.headers.get("retry-after"), self._now())
            delay = self._retry_delay(
                method=method,
                status=status,
                idempotency_key=idempotency_key,
                attempt=attempt,
                elapsed=elapsed,
                retry_after=retry_after,
            )
            error = _api_error(response, request_id)
            logger.warning(
                "amazonpay %s: status=%d reason_code=%s request_id=%s attempt=%d elapsed_ms=%.0f%s",
                operation,
                status,
                error.reason_code,
                request_id,
                attempt,
                elapsed * 1000,
                "" if delay is None else f" retrying in {delay:.2f}s",
                # Structured copies of what the message says, for JSON logs (storefront/logs.py).
                extra={"amazon_operation": operation, "amazon_request_id": request_id},
            )
            self._observe(
                CallRecord(
                    operation,
                    method,
                    attempt,
                    status,
                    type(error).__name__,
                    finished - sent,
                    delay is not None,
                    request_id,
                )
            )
            if delay is None:
                raise error
            response.close()
            self._sleep(delay)

    def _observe(self, record: CallRecord) -> None:
        if self._observer is not None:
            self._observer(record)

    def _retry_delay(
        self,
        *,
        method: str,
        status: int | None,
        idempotency_key: str | None,
        attempt: int,
        elapsed: float,
        retry_after: float | None,
    ) -> float | None:
        """The wait before the next attempt, or None to give up (attempt or time budget spent)."""
        policy = self._retry
        if not should_retry(
            method,
            status,
            has_idempotency_key=idempotency_key is not None,
            attempt=attempt,
            policy=policy,
        ):
            return None
        delay = backoff_delay(attempt, policy, retry_after, self._rng)
        if elapsed + delay > policy.max_total:
            return None
        return delay


def _required_key(operation: str, idempotency_key: str | None) -> str:
    """The caller's key for a money-moving POST; a fresh one, with a warning, when it is missing.

    A random key still makes this call's own retries safe, but not a replay after a crash or a
    second submit: that needs a key derived from the caller's reference (section 7). The
    keyless form is kept only until its last caller (tests/simulator/test_with_client.py) moves.
    """
    if idempotency_key is not None:
        return idempotency_key
    warnings.warn(
        f"{operation} without an idempotency key is deprecated; derive one from your reference",
        DeprecationWarning,
        stacklevel=3,
    )
    return uuid.uuid4().hex


def _json_object(response: requests.Response, request_id: str | None) -> Mapping[str, Any]:
    """The JSON object of a 2xx response.

    A 2xx whose body is not a JSON object means something between us and Amazon mangled the
    answer; we raise ServiceError (reason_code None) with the real status, because the operation
    probably did succeed and the caller must reconcile with a GET, not assume failure blindly.
    """
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ServiceError(
            response.status_code, None, "response body is not a JSON object", request_id
        )
    return data


def _api_error(response: requests.Response, request_id: str | None) -> APIError:
    """Map an error response to its class (section 5.4 body; errors.error_class)."""
    reason_code: str | None = None
    message: str | None = None
    try:
        data = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        raw_reason = data.get("reasonCode")
        raw_message = data.get("message")
        reason_code = raw_reason if isinstance(raw_reason, str) and raw_reason else None
        message = raw_message if isinstance(raw_message, str) else None
    status = response.status_code
    return error_class(status, reason_code)(status, reason_code, message, request_id)
