"""Instant Payment Notifications: parse the SNS envelope Amazon Pay posts, and verify its signature.

Section 10 of docs/amazon-pay-api.md. An IPN is only a hint: after verifying it, GET the object it
names to learn its state. Nothing here imports Flask; a view passes the raw request body.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from amazonpay.errors import NotificationError

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_NOTIFICATION_BYTES",
    "NOTIFICATION_TYPES",
    "SNS_CERT_HOST_PATTERN",
    "IpnMessage",
    "Notification",
    "NotificationVerifier",
    "confirm_subscription",
    "fetch_certificate",
    "parse_notification",
    "sns_string_to_sign",
]

# Section 10: the host rule of [SNSV] `validateUrl` and the Woo plugin.
SNS_CERT_HOST_PATTERN = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
NOTIFICATION_TYPES = frozenset(
    {"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"}
)

# Section 10: the fixed order of the string to sign; a key takes part only when present.
_SIGNED_KEYS = (
    "Message",
    "MessageId",
    "Subject",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_REQUIRED_KEYS = (
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
)
# SignatureVersion -> digest for RSA PKCS#1 v1.5 (section 10).
_DIGESTS: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,  # SNS's original scheme; SHA1 is what it signs with, not our choice.
    "2": hashes.SHA256,
}
_MAX_CERTIFICATE_BYTES = 64 * 1024
# Envelope keys whose values are strings (or null) by section 10. Other keys, such as SNS's
# MessageAttributes object, are not signed and are left out of the envelope.
_STRING_KEYS = frozenset(
    {*_SIGNED_KEYS, *_REQUIRED_KEYS, "SigningCertURL", "SigningCertUrl", "UnsubscribeURL"}
)

# Bounds on an IPN body, checked before and while it is parsed, so that no input costs more than
# a linear scan: section 10's envelope is a flat object of strings whose Message is a small flat
# object, and anything far from that shape is refused rather than explored.
MAX_NOTIFICATION_BYTES = 64 * 1024  # the app's request-body cap; SNS messages here are ~1 KiB
MAX_JSON_DEPTH = 8  # json.loads recurses per level: a deep body would raise RecursionError
_MAX_NUMBER_CHARS = 32  # no field is a number; a 4000-digit one costs quadratic int() time
# A JSON string (possibly unterminated) or a bracket: strings are skipped whole, so brackets
# inside them are not counted. Written as an unrolled loop so the regex never backtracks.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class IpnMessage:
    """The Amazon Pay message inside an SNS `Notification` (its `Message`, parsed again).

    Reads both the current PascalCase keys and the camelCase ones of the older page (section 10).
    """

    merchant_id: str | None
    object_type: str | None  # CHARGE_PERMISSION, CHARGE, REFUND, CHARGEBACK
    object_id: str | None
    charge_permission_id: str | None
    notification_type: str | None  # STATE_CHANGE, ATTRIBUTE_CHANGE
    notification_id: str | None
    notification_version: str | None  # "V2": the notification format, not the API version
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IpnMessage:
        # Case-insensitive lookup covers MerchantID / merchantId / MerchantId alike.
        folded = {str(k).lower(): v for k, v in data.items()}

        def text(key: str) -> str | None:
            value = folded.get(key)  # every field is a string; anything else reads as absent
            return value if isinstance(value, str) else None

        return cls(
            merchant_id=text("merchantid"),
            object_type=text("objecttype"),
            object_id=text("objectid"),
            charge_permission_id=text("chargepermissionid"),
            notification_type=text("notificationtype"),
            notification_id=text("notificationid"),
            notification_version=text("notificationversion"),
            raw=MappingProxyType(dict(data)),
        )


@dataclass(frozen=True)
class Notification:
    """A parsed SNS envelope. `envelope` keeps the received strings the signature covers."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: datetime  # timezone-aware
    signature_version: str
    signature: str = field(repr=False)
    signing_cert_url: str
    message_text: str = field(repr=False)
    message: IpnMessage | None  # None unless a Notification whose Message is a JSON object
    subject: str | None = None
    subscribe_url: str | None = None
    token: str | None = field(default=None, repr=False)
    unsubscribe_url: str | None = None
    envelope: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def parse_notification(body: bytes | str | Mapping[str, Any]) -> Notification:
    """Parse a raw IPN request body (an SNS envelope). Raises NotificationError if malformed.

    Any input either parses or raises NotificationError: size, nesting depth, numbers and
    strings are bounded (see MAX_NOTIFICATION_BYTES, MAX_JSON_DEPTH), and so is the inner
    Message. This checks shape only; call `NotificationVerifier.verify` before trusting it.
    """
    if isinstance(body, Mapping):
        data: Any = body
        _check_strings(data, "notification")
    else:
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise NotificationError("notification body is too large")
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            raise NotificationError("notification body is not UTF-8 JSON") from None
        data = _loads_bounded(text, "notification body")
        if data is _NOT_JSON:
            raise NotificationError("notification body is not UTF-8 JSON")
    if not isinstance(data, Mapping):
        raise NotificationError("notification body is not a JSON object")

    envelope: dict[str, str] = {}
    for key, value in data.items():
        if key not in _STRING_KEYS or value is None:  # unsigned extras; a null optional key
            continue
        if not isinstance(value, str):
            raise NotificationError(f"notification field {key!r} is not a string")
        envelope[key] = value
    # Lambda-style events spell it SigningCertUrl (section 10).
    if "SigningCertURL" not in envelope and "SigningCertUrl" in envelope:
        envelope["SigningCertURL"] = envelope["SigningCertUrl"]
    required = [*_REQUIRED_KEYS, "SigningCertURL"]
    if envelope.get("Type") == "SubscriptionConfirmation":
        required += ["SubscribeURL", "Token"]  # both signed; the URL is what confirms
    missing = [k for k in required if not envelope.get(k)]
    if missing:
        raise NotificationError(f"notification is missing {', '.join(missing)}")

    kind = envelope["Type"]
    if kind not in NOTIFICATION_TYPES:
        raise NotificationError(f"unknown notification Type {kind!r}")

    return Notification(
        type=kind,
        message_id=envelope["MessageId"],
        topic_arn=envelope["TopicArn"],
        timestamp=_parse_timestamp(envelope["Timestamp"]),
        signature_version=envelope["SignatureVersion"],
        signature=envelope["Signature"],
        signing_cert_url=envelope["SigningCertURL"],
        message_text=envelope["Message"],
        message=_parse_message(envelope["Message"]) if kind == "Notification" else None,
        subject=envelope.get("Subject"),
        subscribe_url=envelope.get("SubscribeURL"),
        token=envelope.get("Token"),
        unsubscribe_url=envelope.get("UnsubscribeURL"),
        envelope=MappingProxyType(envelope),
    )


class _NotJson:
    """What `_loads_bounded` returns for text that is not JSON at all (as opposed to refused)."""


_NOT_JSON = _NotJson()


def _loads_bounded(text: str, what: str) -> Any:
    """`json.loads` that refuses, with NotificationError, what section 10 never sends.

    Refused: nesting deeper than MAX_JSON_DEPTH (found by a linear scan before parsing, so the
    parser never recurses deeply), NaN and Infinity, numbers longer than _MAX_NUMBER_CHARS or not
    finite, duplicate keys (another parser might read the other value) and strings that are not
    Unicode text (a lone surrogate from a \\uD800 escape cannot be encoded to sign or log).
    Text that is simply not JSON gives _NOT_JSON, for the caller to judge.
    """
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        lexeme = token.group()  # a string or one bracket
        if lexeme in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise NotificationError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        elif lexeme in ("]", "}"):
            depth -= 1
    try:
        data = json.loads(
            text,
            object_pairs_hook=partial(_unique_keys, what),
            parse_constant=partial(_no_constant, what),
            parse_int=partial(_bounded_int, what),
            parse_float=partial(_bounded_float, what),
        )
    except ValueError:  # JSONDecodeError: not JSON
        return _NOT_JSON
    _check_strings(data, what)
    return data


def _unique_keys(what: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise NotificationError(f"{what} repeats a key")
    return data


def _no_constant(what: str, name: str) -> Any:
    raise NotificationError(f"{what} contains {name}")


def _bounded_int(what: str, digits: str) -> int:
    if len(digits) > _MAX_NUMBER_CHARS:
        raise NotificationError(f"{what} contains a number longer than {_MAX_NUMBER_CHARS}")
    return int(digits)


def _bounded_float(what: str, literal: str) -> float:
    value = float(literal) if len(literal) <= _MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise NotificationError(f"{what} contains a number too long or too large")
    return value


def _check_strings(data: Any, what: str, depth: int = 0) -> None:
    """Refuse lone surrogates in keys and strings; `depth` is bounded by MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise NotificationError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(data, str):
        if not data.isascii():
            try:
                data.encode("utf-8")
            except UnicodeEncodeError:
                raise NotificationError(f"{what} contains a string that is not text") from None
    elif isinstance(data, Mapping):
        for key, value in data.items():
            _check_strings(key, what, depth + 1)
            _check_strings(value, what, depth + 1)
    elif isinstance(data, list | tuple):
        for item in data:
            _check_strings(item, what, depth + 1)


def _parse_timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise NotificationError(f"notification Timestamp {value!r} is not ISO 8601") from None
    # SNS always sends UTC with a Z; a bare time is read as UTC rather than local time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_message(text: str) -> IpnMessage | None:
    # Section 10: Message is a JSON *string* to be parsed again, within the same bounds. SNS
    # itself allows any text, so text that is not a JSON object is not an error here, just not
    # an Amazon Pay message; a hostile one (too deep, NaN, a huge number) is refused.
    data = _loads_bounded(text, "notification Message")
    return IpnMessage.from_json(data) if isinstance(data, Mapping) else None


def sns_string_to_sign(envelope: Mapping[str, str] | Notification) -> str:
    """`key\\nvalue\\n` for each present key in SNS's fixed order (section 10)."""
    fields = envelope.envelope if isinstance(envelope, Notification) else envelope
    return "".join(f"{key}\n{fields[key]}\n" for key in _SIGNED_KEYS if key in fields)


def fetch_certificate(url: str, *, timeout: float = 5.0) -> bytes:
    """GET a signing certificate with `requests`. Redirects are refused: the URL was checked."""
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False, stream=True)
    except requests.RequestException as exc:
        raise NotificationError(f"could not fetch signing certificate {url}: {exc}") from exc
    with response:
        if response.status_code != 200:
            raise NotificationError(
                f"signing certificate {url} answered HTTP {response.status_code}"
            )
        content = bytearray()
        for chunk in response.iter_content(chunk_size=8192):
            content += chunk
            if len(content) > _MAX_CERTIFICATE_BYTES:
                raise NotificationError(f"signing certificate {url} is too large")
    return bytes(content)


def confirm_subscription(url: str, *, timeout: float = 5.0) -> None:
    """Confirm an SNS subscription: GET the SubscribeURL of a verified SubscriptionConfirmation.

    Section 10. Call it only after `NotificationVerifier.verify` passed, which also checked the
    URL's host. Redirects are refused and the answer's body is not read. Raises
    NotificationError unless SNS answers 200; the message never holds the URL, whose query
    carries the subscription's Token.
    """
    host = urlsplit(url).hostname
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False, stream=True)
    except requests.RequestException as exc:
        # str(exc) would repeat the URL, Token included.
        raise NotificationError(
            f"could not reach {host} to confirm the subscription: {type(exc).__name__}"
        ) from None
    with response:
        if response.status_code != 200:
            raise NotificationError(
                f"{host} answered HTTP {response.status_code} to the subscription confirmation"
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@dataclass(frozen=True)
class _Certificate:
    certificate: x509.Certificate
    public_key: rsa.RSAPublicKey


class NotificationVerifier:
    """Checks that an IPN really comes from SNS, as AWS describes it (section 10).

    Thread-safe; build one per process and share it. Certificates are fetched and parsed once
    per URL and kept in a small LRU cache. `allow_cert_urls` names exact certificate URLs
    trusted besides the SNS rule: the offline simulator's `http://127.0.0.1:…/_simulator/sns-cert.pem`
    in development, never in production. Their origins are likewise trusted for a
    SubscriptionConfirmation's SubscribeURL.
    """

    def __init__(
        self,
        fetch_certificate: Callable[[str], bytes],
        *,
        trusted_cert_host_pattern: re.Pattern[str] = SNS_CERT_HOST_PATTERN,
        expected_topic_arns: frozenset[str] | None = None,
        allow_cert_urls: Iterable[str] = (),
        max_age: timedelta = timedelta(hours=1),
        max_clock_skew: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = _utc_now,
        max_cached_certificates: int = 16,
    ) -> None:
        if max_age <= timedelta(0) or max_clock_skew < timedelta(0):
            raise ValueError("max_age must be positive and max_clock_skew not negative")
        if max_cached_certificates < 1:
            raise ValueError("max_cached_certificates must be at least 1")
        if isinstance(allow_cert_urls, str):  # a lone URL would become a set of characters
            raise TypeError("allow_cert_urls takes an iterable of URLs, not one string")
        self._fetch = fetch_certificate
        self._host_pattern = trusted_cert_host_pattern
        self._topic_arns = expected_topic_arns
        self._allowed_urls = frozenset(allow_cert_urls)
        self._allowed_origins = frozenset(_origin(url) for url in self._allowed_urls)
        self._max_age = max_age
        self._max_skew = max_clock_skew
        self._clock = clock
        self._max_cached = max_cached_certificates
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, _Certificate] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}

    def verify(self, notification: Notification) -> None:
        """Return if the notification is authentic and fresh; raise NotificationError if not.

        Cheap checks run first, so an untrusted certificate URL is never fetched.
        """
        digest = _DIGESTS.get(notification.signature_version)
        if digest is None:
            raise NotificationError(
                f"unsupported SignatureVersion {notification.signature_version!r}"
            )
        self.check_cert_url(notification.signing_cert_url)
        if notification.type == "SubscriptionConfirmation":
            self.check_subscribe_url(notification.subscribe_url or "")
        if self._topic_arns is not None and notification.topic_arn not in self._topic_arns:
            raise NotificationError(f"unexpected TopicArn {notification.topic_arn!r}")
        now = self._clock()
        self._check_age(notification.timestamp, now)
        try:
            signature = base64.b64decode(notification.signature, validate=True)
        except (binascii.Error, ValueError):
            raise NotificationError("notification Signature is not Base64") from None

        cert = self._certificate(notification.signing_cert_url)
        if not cert.certificate.not_valid_before_utc <= now <= cert.certificate.not_valid_after_utc:
            raise NotificationError("signing certificate is not valid at this time")
        try:
            cert.public_key.verify(
                signature,
                sns_string_to_sign(notification).encode("utf-8"),
                padding.PKCS1v15(),
                digest(),
            )
        except InvalidSignature:
            raise NotificationError("notification signature does not verify") from None

    def check_cert_url(self, url: str) -> None:
        """Raise NotificationError unless `url` may be fetched as a signing certificate.

        Section 10: https, a host like `sns.<region>.amazonaws.com(.cn)`, a path ending `.pem`.
        We also refuse user info, ports, queries and fragments, which SNS never sends.
        """
        if url in self._allowed_urls:
            return
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise NotificationError(f"untrusted SigningCertURL {url!r}") from None
        if (
            parts.scheme != "https"
            or parts.username is not None
            or parts.password is not None
            or port not in (None, 443)
            or parts.query
            or parts.fragment
            or not parts.hostname
            or not self._host_pattern.fullmatch(parts.hostname)
            or not parts.path.endswith(".pem")
        ):
            raise NotificationError(f"untrusted SigningCertURL {url!r}")

    def check_subscribe_url(self, url: str) -> None:
        """Raise NotificationError unless `url` may be fetched to confirm a subscription.

        Section 10: https on a host like `sns.<region>.amazonaws.com(.cn)` (the certificate host
        rule), or the origin of a trusted certificate URL (the offline simulator). The message
        names the host only: the URL's query carries the Token.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise NotificationError("untrusted SubscribeURL") from None
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise NotificationError(f"untrusted SubscribeURL on {parts.hostname!r}")
        if (parts.scheme, parts.netloc) in self._allowed_origins:
            return
        if (
            parts.scheme != "https"
            or port not in (None, 443)
            or not parts.hostname
            or not self._host_pattern.fullmatch(parts.hostname)
        ):
            raise NotificationError(f"untrusted SubscribeURL on {parts.hostname!r}")

    def _check_age(self, timestamp: datetime, now: datetime) -> None:
        if timestamp < now - self._max_age:
            raise NotificationError(f"notification is too old (Timestamp {timestamp.isoformat()})")
        if timestamp > now + self._max_skew:
            raise NotificationError(
                f"notification is from the future (Timestamp {timestamp.isoformat()})"
            )

    def _certificate(self, url: str) -> _Certificate:
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None:
                self._cache.move_to_end(url)
                return cached
            url_lock = self._loading.setdefault(url, threading.Lock())
        # One fetch per URL at a time; other URLs and cached certificates are not held up.
        with url_lock:
            with self._lock:
                cached = self._cache.get(url)
                if cached is not None:
                    return cached
            try:
                loaded = self._load(url)
            except BaseException:
                with self._lock:
                    self._loading.pop(url, None)
                raise
            with self._lock:
                # Cached before the loading lock is dropped, so no latecomer fetches again.
                self._cache[url] = loaded
                self._cache.move_to_end(url)
                while len(self._cache) > self._max_cached:
                    self._cache.popitem(last=False)
                self._loading.pop(url, None)
            return loaded

    def _load(self, url: str) -> _Certificate:
        try:
            pem = self._fetch(url)
        except NotificationError:
            raise
        except Exception as exc:  # whatever the injected fetcher raises, the IPN is unverified
            raise NotificationError(f"could not fetch signing certificate {url}: {exc}") from exc
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise NotificationError(f"signing certificate {url} is not a PEM certificate") from None
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise NotificationError(f"signing certificate {url} does not hold an RSA key")
        return _Certificate(certificate, public_key)
