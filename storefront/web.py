"""Per-app services and the small web helpers every view shares: buyer id, CSRF, headers.

`Shop` is built once by `create_app` and kept in `app.extensions["shop"]`; views reach it with
`shop()`. The buyer is an anonymous account id kept in the signed session cookie.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from amazonpay.client import AmazonPayClient
from amazonpay.notifications import NotificationVerifier
from storefront.button import ButtonSettings
from storefront.checkout import ReturnHandler
from storefront.db import Store
from storefront.db.migrations import SchemaGate
from storefront.operations import Operations

__all__ = [
    "Shop",
    "buyer_id",
    "csrf_token",
    "install_request_guards",
    "leave_notice",
    "shop",
    "take_notice",
]

_BUYER_ID = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{8,64}\Z")
MAX_QUERY_BYTES = 2048  # a return URL carries two short ids; anything far longer is hostile
# POST endpoints without our form token: Amazon's IPN carries no cookie of ours, and its SNS
# signature is checked by the view instead. Exact endpoint names, nothing broader.
CSRF_EXEMPT_ENDPOINTS = frozenset({"notifications.amazon_pay"})
# Endpoints that answer without the database: the health check reports the schema itself.
SCHEMA_EXEMPT_ENDPOINTS = frozenset({"static", "shop.healthz", "metrics", None})


@dataclass
class Shop:
    """Everything the views need, built once per app."""

    client: AmazonPayClient
    store: Store
    returns: ReturnHandler
    button: ButtonSettings
    checkout_js_url: str
    notifications: NotificationVerifier
    schema: SchemaGate
    # Wiring's own clean-up (the embedded simulator in offline mode), run by close().
    on_close: tuple[Callable[[], None], ...] = ()
    pending_reuse_window: timedelta = timedelta(hours=1)
    # Every money-moving call but the return's: the same ledger, leases and clock as the return.
    operations: Operations = field(init=False)

    def __post_init__(self) -> None:
        r = self.returns
        self.operations = Operations(
            r.store,
            clock=r.clock,
            sleep=r.sleep,
            lease=r.lease,
            wait=r.wait,
            leases=r.leases,
            poll_interval=r.poll_interval,
        )

    def now(self) -> datetime:
        return datetime.now(UTC)

    def close(self) -> None:
        """Release the pool, the HTTP session and whatever the wiring asked to close."""
        self.client.close()
        self.store.engine.dispose()
        for close in self.on_close:
            close()


def shop() -> Shop:
    found: Shop = current_app.extensions["shop"]
    return found


def buyer_id() -> str:
    """The anonymous buyer of this browser, created on first use."""
    value = session.get("buyer")
    if not isinstance(value, str) or not _BUYER_ID.match(value):
        value = secrets.token_urlsafe(16)
        session["buyer"] = value
    return value


def csrf_token() -> str:
    """The per-session form token (double-submit via the signed session cookie)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) != 43:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def leave_notice(name: str) -> None:
    """Remember a one-shot notice for the next page this browser shows.

    It rides in the session cookie that the redirect itself sets, so the failure redirect's
    Location stays exactly `/wallet` or `/checkout`, and a browser that came back from Amazon
    without its old cookie still sees the message on the page it is sent to.
    """
    session["notice"] = name


def take_notice(name: str) -> bool:
    """True once when `leave_notice(name)` was the last notice left for this browser."""
    if session.get("notice") != name:
        return False
    session.pop("notice")
    return True


def _check_csrf() -> None:
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if (
        not isinstance(expected, str)
        or not given
        or not hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))
    ):
        abort(400, description="csrf")


class _SessionInterface(SecureCookieSessionInterface):
    """Marks the session cookie Secure whenever the request itself came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = bool(app.config["SESSION_COOKIE_SECURE"])
        try:
            return configured or request.is_secure
        except RuntimeError:  # outside a request
            return configured


# Amazon's own checkout.js talks to more Amazon hosts than the one it is served from: the
# sign-in and payment pages (payments.amazon.*), its API and images. Which ones exactly is not
# documented (docs/amazon-pay-api.md has no CSP list), so for Amazon's script we allow Amazon's
# domains by wildcard; for any other checkout.js (the simulator, a test double) only its origin.
_AMAZON_SOURCES = (
    "https://*.payments-amazon.com https://*.amazon.com https://*.amazon.eu "
    "https://*.amazon.co.uk https://*.amazon.de https://*.amazon.co.jp "
    "https://*.media-amazon.com https://*.ssl-images-amazon.com"
)


def content_security_policy(checkout_js_url: str) -> str:
    parts = urlsplit(checkout_js_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    host = parts.hostname or ""
    amazon = parts.scheme == "https" and host.endswith(".payments-amazon.com")
    sources = f"{origin} {_AMAZON_SOURCES}" if amazon else origin
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {sources}",
            f"form-action 'self' {sources}",
            f"connect-src 'self' {sources}",
            f"frame-src {sources}",
            f"img-src 'self' data: {sources}",
            # Amazon's button styles itself inline; our own pages never need that.
            f"style-src 'self' {sources} 'unsafe-inline'" if amazon else "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


def install_request_guards(app: Flask, checkout_js_url: str) -> None:
    """CSRF on every POST, size limits, request ids and the security headers."""
    app.session_interface = _SessionInterface()
    csp = content_security_policy(checkout_js_url)

    @app.before_request
    def _guard() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        # The return URL answers hostile input with the contract's failure redirect instead;
        # its use case rejects anything that does not match the id patterns.
        if (
            len(request.query_string) > MAX_QUERY_BYTES
            and request.endpoint != "checkout.checkout_return"
        ):
            abort(400)
        # Never serve against a schema older than the code (or a database not there yet).
        if request.endpoint not in SCHEMA_EXEMPT_ENDPOINTS and not shop().schema.ready():
            abort(503)
        if (
            request.method == "POST"
            and request.routing_exception is None  # unknown routes and methods: 404/405 first
            and request.endpoint not in CSRF_EXEMPT_ENDPOINTS
        ):
            _check_csrf()

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = csp
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        # The return URL carries ids: never send it to another origin in a Referer.
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
        headers["X-Request-Id"] = str(g.get("request_id", "-"))
        if request.is_secure:
            # Over https, browsers should never try this shop over plain http again.
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if request.endpoint != "static":
            headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token}
