"""Settings read from the environment once at start-up, validated and typed.

`Settings.from_env(environ)` either returns a complete, frozen `Settings` or raises
`ConfigurationError` with one line that names the offending variable, so a misconfiguration stops
start-up instead of surfacing later as a 500 on a buyer's request (docs/contract.md).
Without `AMAZON_PAY_PUBLIC_KEY_ID` the app runs offline against the embedded simulator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from amazonpay import regions
from amazonpay.errors import ConfigurationError
from amazonpay.signing import Algorithm, load_private_key
from storefront.button import PaymentIntent
from storefront.logs import LogFormat
from storefront.logs import log_format as log_format_from

__all__ = ["ConfigurationError", "Settings"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_MERCHANT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STORE_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from the environment, after validation."""

    public_key_id: str | None
    private_key: RSAPrivateKey | None  # parsed once, here; None in simulator mode
    merchant_id: str | None  # None: the simulator's value (app.py fills it in)
    store_id: str | None  # None: the simulator's value
    region: str  # na, eu, uk or jp
    sandbox: bool
    endpoint: str | None  # scheme://host[:port], no trailing slash
    checkout_js_url: str | None  # None: the region's URL, or the simulator's stand-in
    algorithm: Algorithm
    database_url: str | None  # SQLAlchemy URL; None: a SQLite file under instance/
    secret_key: str | None  # None only in simulator mode (generated under instance/)
    trust_proxy: bool  # APP_TRUST_PROXY: honour X-Forwarded-* from one proxy hop
    public_url: str | None  # PUBLIC_URL, scheme://host[:port]; None only in simulator mode
    log_format: LogFormat  # LOG_FORMAT: text (default) or json
    simulator_port: int  # APP_SIMULATOR_PORT: 0 = any free port
    # APP_SIMULATOR_PUBLIC_URL: where browsers reach the simulator's pages (offline mode only),
    # e.g. the shop's origin + /_amazon-pay-simulator; None: the simulator's own loopback URL.
    simulator_public_url: str | None
    # AMAZON_PAY_PAYMENT_INTENT: the one-time checkout's paymentIntent and saved-wallet captureNow.
    payment_intent: PaymentIntent = PaymentIntent.AUTHORIZE_WITH_CAPTURE
    # ADMIN_PASSWORD: the merchant console's password; None: generated in simulator mode, and
    # the console answers 404 otherwise.
    admin_password: str | None = None

    @property
    def simulator_mode(self) -> bool:
        """No credentials: run offline against the embedded simulator."""
        return self.public_key_id is None

    @property
    def ledger_currency(self) -> str:
        return regions.ledger_currency(self.region)

    @property
    def default_checkout_js_url(self) -> str:
        return regions.checkout_js_url(self.region)

    @classmethod
    def from_env(cls, environ: Mapping[str, object]) -> Settings:
        """Read and validate; raise ConfigurationError naming the first bad variable."""
        env = _Env(environ)
        public_key_id = env.get("AMAZON_PAY_PUBLIC_KEY_ID")
        if public_key_id is not None and not _KEY_ID.match(public_key_id):
            raise ConfigurationError(
                "AMAZON_PAY_PUBLIC_KEY_ID: must be letters, digits, '-' or '_' (up to 128)"
            )
        private_key = None
        key_source = env.get("AMAZON_PAY_PRIVATE_KEY")
        if public_key_id is not None:
            if key_source is None:
                raise ConfigurationError(
                    "AMAZON_PAY_PRIVATE_KEY: required when AMAZON_PAY_PUBLIC_KEY_ID is set"
                )
            private_key = _read_private_key(key_source)

        merchant_id = env.get("AMAZON_PAY_MERCHANT_ID")
        if merchant_id is not None and not _MERCHANT_ID.match(merchant_id):
            raise ConfigurationError(
                "AMAZON_PAY_MERCHANT_ID: must be 1-64 letters, digits, dots, dashes or underscores"
            )
        store_id = env.get("AMAZON_PAY_STORE_ID")
        if store_id is not None and not _STORE_ID.match(store_id):
            raise ConfigurationError(
                "AMAZON_PAY_STORE_ID: must look like amzn1.application-oa2-client.<id>"
            )

        raw_region = (env.get("AMAZON_PAY_REGION") or "na").lower()
        try:
            region = regions.marketplace(raw_region)
        except ConfigurationError:
            raise ConfigurationError(
                f"AMAZON_PAY_REGION: unknown region {raw_region!r} (expected na, eu, uk, jp)"
            ) from None
        sandbox = _parse_bool("AMAZON_PAY_SANDBOX", env.get("AMAZON_PAY_SANDBOX"), default=True)
        # A LIVE-/SANDBOX- key id names its environment itself (docs section 1.11); the flag
        # only decides for unprefixed keys, and the button's `sandbox` must agree with the key.
        key_prefix = (public_key_id or "").upper()
        if key_prefix.startswith("LIVE"):
            sandbox = False
        elif key_prefix.startswith("SANDBOX"):
            sandbox = True

        endpoint = env.get("AMAZON_PAY_ENDPOINT")
        if endpoint is not None:
            endpoint = _parse_endpoint(endpoint)
        checkout_js_url = env.get("AMAZON_PAY_CHECKOUT_JS_URL")
        if checkout_js_url is not None:
            _parse_checkout_js_url(checkout_js_url)

        try:
            algorithm = Algorithm.parse(env.get("AMAZON_PAY_ALGORITHM") or Algorithm.PSS_V2.value)
        except ValueError:
            raise ConfigurationError(
                "AMAZON_PAY_ALGORITHM: unknown algorithm "
                f"{env.get('AMAZON_PAY_ALGORITHM')!r} (expected AMZN-PAY-RSASSA-PSS-V2 or "
                "AMZN-PAY-RSASSA-PSS)"
            ) from None

        database_url = env.get("DATABASE_URL")
        if database_url is not None:
            database_url = _parse_database_url(database_url)

        secret_key = env.get("SECRET_KEY")
        if secret_key is None and public_key_id is not None:
            raise ConfigurationError(
                "SECRET_KEY: required when AMAZON_PAY_PUBLIC_KEY_ID is set "
                "(it is only generated in simulator mode)"
            )
        if secret_key is not None and not secret_key.strip():
            raise ConfigurationError("SECRET_KEY: must not be empty")
        if secret_key is not None and public_key_id is not None:
            _check_secret_strength(secret_key)

        public_url = env.get("PUBLIC_URL")
        if public_url is not None:
            public_url = _parse_public_url(public_url)
        elif public_key_id is not None:
            raise ConfigurationError(
                "PUBLIC_URL: required when AMAZON_PAY_PUBLIC_KEY_ID is set "
                "(the shop's origin, e.g. https://shop.example)"
            )

        log_format = log_format_from(env.get("LOG_FORMAT"))
        payment_intent = _parse_payment_intent(env.get("AMAZON_PAY_PAYMENT_INTENT"))
        admin_password = env.get("ADMIN_PASSWORD")
        if admin_password is not None and len(admin_password) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ConfigurationError(
                f"ADMIN_PASSWORD: too short (at least {MIN_ADMIN_PASSWORD_LENGTH} characters)"
            )

        trust_proxy = _parse_bool("APP_TRUST_PROXY", env.get("APP_TRUST_PROXY"), default=False)
        simulator_port = _parse_port("APP_SIMULATOR_PORT", env.get("APP_SIMULATOR_PORT") or "0")
        simulator_public_url = env.get("APP_SIMULATOR_PUBLIC_URL")
        if simulator_public_url is not None:
            simulator_public_url = _parse_simulator_public_url(simulator_public_url)

        return cls(
            public_key_id=public_key_id,
            private_key=private_key,
            merchant_id=merchant_id,
            store_id=store_id,
            region=region,
            sandbox=sandbox,
            endpoint=endpoint,
            checkout_js_url=checkout_js_url,
            algorithm=algorithm,
            database_url=database_url,
            secret_key=secret_key,
            trust_proxy=trust_proxy,
            public_url=public_url,
            log_format=log_format,
            simulator_port=simulator_port,
            simulator_public_url=simulator_public_url,
            payment_intent=payment_intent,
            admin_password=admin_password,
        )


class _Env:
    """Environment lookups where unset, empty and all-blank values all mean "not set"."""

    def __init__(self, environ: Mapping[str, object]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None:
            return None
        text = str(value).strip()
        multiline = "\n" in text or "\r" in text or "\x00" in text
        if multiline and not text.startswith("-----BEGIN"):
            raise ConfigurationError(f"{name}: must be a single line")
        return text or None


def _parse_bool(name: str, value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name}: expected true or false, got {value!r}")


def _parse_port(name: str, value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ConfigurationError(f"{name}: expected a port number 0-65535, got {value!r}")
    return int(value)


def _read_private_key(source: str) -> RSAPrivateKey:
    name = "AMAZON_PAY_PRIVATE_KEY"
    if source.startswith("-----BEGIN"):
        pem = source.encode("utf-8")  # the key itself rather than a path: accepted for containers
    else:
        try:
            pem = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"{name}: cannot read {source!r} ({exc.strerror or type(exc).__name__})"
            ) from None
    try:
        return load_private_key(pem)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{name}: {source if not source.startswith('-----') else 'the value'!r} is not an "
            "unencrypted PEM RSA private key (PKCS#1 or PKCS#8)"
        ) from None


def _parse_endpoint(value: str) -> str:
    name = "AMAZON_PAY_ENDPOINT"
    parts = _split_url(name, value)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigurationError(f"{name}: expected scheme://host[:port] only, got {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


# Outside the demo the secret signs buyers' sessions: a short or repetitive one can be guessed.
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_DISTINCT = 10


def _check_secret_strength(value: str) -> None:
    if len(value) < MIN_SECRET_KEY_LENGTH or len(set(value)) < MIN_SECRET_KEY_DISTINCT:
        raise ConfigurationError(
            f"SECRET_KEY: too weak (at least {MIN_SECRET_KEY_LENGTH} characters, "
            f"{MIN_SECRET_KEY_DISTINCT} of them different); e.g. python -c "
            "'import secrets; print(secrets.token_hex(32))'"
        )


# The console moves money; wrong guesses are slowed down, but a short password falls anyway.
MIN_ADMIN_PASSWORD_LENGTH = 12


def _parse_payment_intent(value: str | None) -> PaymentIntent:
    if value is None:
        return PaymentIntent.AUTHORIZE_WITH_CAPTURE
    for intent in PaymentIntent:
        if intent.value.lower() == value.lower():
            return intent
    raise ConfigurationError(
        f"AMAZON_PAY_PAYMENT_INTENT: expected AuthorizeWithCapture or Authorize, got {value!r}"
    )


def _parse_public_url(value: str) -> str:
    name = "PUBLIC_URL"
    parts = _split_url(name, value)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigurationError(
            f"{name}: expected the shop's origin scheme://host[:port], got {value!r}"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _parse_simulator_public_url(value: str) -> str:
    name = "APP_SIMULATOR_PUBLIC_URL"
    parts = _split_url(name, value)
    if parts.query or parts.fragment or parts.username:
        raise ConfigurationError(
            f"{name}: expected scheme://host[:port][/path] without query or user, got {value!r}"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def _parse_checkout_js_url(value: str) -> None:
    _split_url("AMAZON_PAY_CHECKOUT_JS_URL", value)


def _split_url(name: str, value: str) -> _UrlParts:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError(f"{name}: not a valid URL: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name}: expected an http(s)://host URL, got {value!r}")
    if port == 0 or any(c.isspace() for c in value):
        raise ConfigurationError(f"{name}: not a valid URL: {value!r}")
    return _UrlParts(
        parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment, parts.username
    )


@dataclass(frozen=True)
class _UrlParts:
    scheme: str
    netloc: str
    path: str
    query: str
    fragment: str
    username: str | None


def _parse_database_url(value: str) -> str:
    name = "DATABASE_URL"
    # Plain postgresql:// (and Heroku-style postgres://) means psycopg 3 here, not psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            value = "postgresql+psycopg://" + value[len(prefix) :]
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigurationError(
            f"{name}: not a database URL (expected sqlite:///path.db or "
            "postgresql://user@host:port/db)"
        ) from None
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigurationError(
            f"{name}: unsupported database {url.drivername!r} (expected sqlite or postgresql)"
        )
    if url.drivername.startswith("postgresql") and not url.database:
        raise ConfigurationError(f"{name}: the postgresql URL names no database")
    return value
