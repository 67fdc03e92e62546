"""The Flask application factory: wiring only (settings, database, client, views, errors, logs).

`gunicorn 'app:create_app()'` or `flask --app app run`. Nothing happens at import time.
Without Amazon Pay credentials the app runs offline against the embedded simulator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask, render_template
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from amazonpay.client import AmazonPayClient, RetryPolicy
from amazonpay.notifications import NotificationVerifier, fetch_certificate
from amazonpay.simulator import SIMULATOR_MERCHANT_ID, SIMULATOR_STORE_ID
from config import ConfigurationError, Settings
from offline import (
    DEV_KEY_ID,
    OfflineSimulator,
    ensure_admin_password,
    ensure_dev_key,
    ensure_secret_key,
    ensure_simulator,
)
from storefront.button import ButtonSettings
from storefront.checkout import ReturnHandler
from storefront.db import DatabaseTimeouts, Store, create_store_engine
from storefront.db.migrations import SchemaGate
from storefront.logs import configure_logging
from storefront.metrics import install_metrics, observe_amazon_call
from storefront.outages import register_outage_pages
from storefront.views import register_blueprints
from storefront.views.admin import reconcile_console
from storefront.web import Shop, install_request_guards

__all__ = ["ConfigurationError", "create_app"]

# Keys of the contract's environment table (and APP_* knobs): read by Settings, not app.config.
_SETTINGS_PREFIXES = ("AMAZON_PAY_", "APP_")
_SETTINGS_KEYS = {"DATABASE_URL", "SECRET_KEY", "ADMIN_PASSWORD"}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides environment variables and sets Flask keys (TESTING...).

    Raises ConfigurationError (one line naming the variable) on a misconfiguration, so the
    server refuses to start instead of failing buyers' requests later.
    """
    overrides = dict(config or {})
    settings = Settings.from_env({**os.environ, **overrides})
    instance_path = overrides.get("INSTANCE_PATH") or os.environ.get("APP_INSTANCE_PATH")
    app = Flask(__name__, instance_path=str(instance_path) if instance_path else None)
    instance = Path(app.instance_path)

    simulator: OfflineSimulator | None = None
    admin_password: str | None
    if settings.simulator_mode:
        _private_directory(instance)
        private_key = ensure_dev_key(instance)
        public_key_id = DEV_KEY_ID
        secret_key = settings.secret_key or ensure_secret_key(instance)
        admin_password = settings.admin_password or ensure_admin_password(instance)
        simulator = ensure_simulator(
            instance,
            DEV_KEY_ID,
            private_key,
            settings.simulator_port,
            settings.simulator_public_url,
        )
        endpoint: str | None = simulator.base_url
        checkout_js = f"{simulator.pages_url}/checkout.js"
    else:
        assert settings.public_key_id is not None
        assert settings.private_key is not None
        assert settings.secret_key is not None
        private_key = settings.private_key
        public_key_id = settings.public_key_id
        secret_key = settings.secret_key
        admin_password = settings.admin_password  # None: the console answers 404
        endpoint = settings.endpoint
        checkout_js = settings.checkout_js_url or settings.default_checkout_js_url

    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # Strict would drop the cookie on Amazon's redirect back
        SESSION_COOKIE_NAME="shop_session",
        PERMANENT_SESSION_LIFETIME=timedelta(days=30),
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=16 * 1024,
        MAX_FORM_PARTS=50,
        # A short lease its holder keeps renewing (storefront/db/leases.py): a slow winner is
        # never overtaken, a crashed one is taken over 20 s after its last renewal. Others wait
        # on a claim only while it is this young (a double click); then "being confirmed".
        CHECKOUT_CLAIM_LEASE_SECONDS=20.0,
        CHECKOUT_CLAIM_WAIT_SECONDS=2.0,
    )
    app.config.update(
        {
            key: value
            for key, value in overrides.items()
            if key not in _SETTINGS_KEYS and not key.startswith(_SETTINGS_PREFIXES)
        }
    )
    app.config.update(_host_settings(settings.public_url))
    # The merchant console's settings (storefront/views/admin.py reads them at registration).
    app.config.update(ADMIN_PASSWORD=admin_password, PAYMENT_INTENT=settings.payment_intent)
    if simulator is not None:
        # The simulator's buyer pages under /_amazon-pay-simulator on the shop's own port.
        app.wsgi_app = simulator.pages_proxy(app.wsgi_app, app.config["TRUSTED_HOSTS"])  # type: ignore[method-assign]
    if settings.trust_proxy:
        # APP_TRUST_PROXY=true: exactly one reverse proxy in front sets X-Forwarded-Proto/Host.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    database_url = settings.database_url
    if database_url is None:
        _private_directory(instance)
        database_url = f"sqlite:///{_private_file(instance / 'storefront.sqlite3')}"
    store = Store(create_store_engine(database_url, DatabaseTimeouts.from_config(app.config)))
    # No schema work beyond creating a new database's tables: upgrading one with rows is the
    # operator's `flask --app app db upgrade`. A database that is down does not stop start-up.
    schema = SchemaGate(
        store.engine, recheck_seconds=float(app.config.get("SCHEMA_RECHECK_SECONDS", 2.0))
    )
    schema.ready()

    try:
        client = AmazonPayClient(
            public_key_id=public_key_id,
            private_key=private_key,
            region=settings.region,
            sandbox=settings.sandbox,
            endpoint=endpoint,
            algorithm=settings.algorithm,
            # A buyer is waiting: bound each call to about 17 s at worst (last retry starts by
            # 6 s, then connect + read). A call that runs out is reconciled, never failed.
            connect_timeout=3.05,
            read_timeout=8.0,
            retry=RetryPolicy(max_attempts=3, base_delay=0.25, max_delay=2.0, max_total=6.0),
            observer=observe_amazon_call,
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"AMAZON_PAY_ENDPOINT: {exc}") from None

    app.extensions["shop"] = Shop(
        client=client,
        store=store,
        returns=ReturnHandler(
            client,
            store,
            clock=lambda: datetime.now(UTC),
            sleep=time.sleep,
            lease=timedelta(seconds=float(app.config["CHECKOUT_CLAIM_LEASE_SECONDS"])),
            wait=timedelta(seconds=float(app.config["CHECKOUT_CLAIM_WAIT_SECONDS"])),
        ),
        button=ButtonSettings(
            merchant_id=settings.merchant_id or SIMULATOR_MERCHANT_ID,
            store_id=settings.store_id or SIMULATOR_STORE_ID,
            ledger_currency=settings.ledger_currency,
            sandbox=settings.sandbox,
            payment_intent=settings.payment_intent,
        ),
        checkout_js_url=checkout_js,
        notifications=_notification_verifier(app, simulator),
        schema=schema,
        on_close=(simulator.shutdown,) if simulator is not None else (),
    )
    if simulator is not None:
        app.extensions["simulator"] = simulator

    install_request_guards(app, checkout_js)
    register_blueprints(app)
    install_metrics(app)
    _register_error_pages(app)
    register_outage_pages(app)
    configure_logging(app, settings.log_format)
    _register_commands(app)
    return app


# Without PUBLIC_URL (the offline demo only) the shop answers on the machine it runs on.
_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _host_settings(public_url: str | None) -> dict[str, Any]:
    """Build absolute URLs from PUBLIC_URL and refuse requests for any other Host (400).

    The Host header would otherwise go into the signed checkoutResultReturnUrl.
    """
    if public_url is None:
        return {"TRUSTED_HOSTS": _LOOPBACK_HOSTS}
    parts = urlsplit(public_url)
    return {
        "SERVER_NAME": parts.netloc,
        "PREFERRED_URL_SCHEME": parts.scheme,
        "TRUSTED_HOSTS": [parts.hostname],
        "SESSION_COOKIE_SECURE": parts.scheme == "https",
    }


def _private_directory(path: Path) -> None:
    """The instance folder holds keys, the secret and the demo database: ours alone."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _private_file(path: Path) -> Path:
    """Create the file readable by us only (SQLite gives its -wal and -shm the same mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)
    return path


def _notification_verifier(app: Flask, simulator: OfflineSimulator | None) -> NotificationVerifier:
    """IPN signatures by Amazon's SNS certificate rules; offline, also the embedded simulator's.

    `NOTIFICATION_CERT_URLS` (Flask config, never the environment) names further exact
    certificate URLs to trust: tests point it at their own simulator.
    """
    trusted = [str(url) for url in app.config.get("NOTIFICATION_CERT_URLS", ())]
    if simulator is not None:
        trusted.append(f"{simulator.base_url}/_simulator/sns-cert.pem")
    return NotificationVerifier(fetch_certificate, allow_cert_urls=trusted)


def _register_error_pages(app: Flask) -> None:
    """Our own pages for every error: never a stack trace, never Amazon's text."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> BaseResponse:
        code = error.code or 500
        if isinstance(error, SecurityError):
            # A Host we do not serve: no URL can be built for it, so no page with links.
            return BaseResponse("Unknown host.\n", 400, mimetype="text/plain")
        response = app.make_response((render_template("error.html", code=code), code))
        if code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods or [])  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[str, int]:
        app.logger.exception("unhandled error", exc_info=error)
        return render_template("error.html", code=500), 500

    app.register_error_handler(InternalServerError, _http_error)


def _register_commands(app: Flask) -> None:
    @app.cli.group("db")
    def db() -> None:
        """The database schema: Alembic revisions in migrations/."""

    @db.command("upgrade")
    def db_upgrade() -> None:
        """Bring the schema to this code's revision (safe beside running instances)."""
        status = app.extensions["shop"].store.upgrade()
        click.echo(status.message())
        if not status.ready:
            raise SystemExit(1)

    @db.command("current")
    def db_current() -> None:
        """Say where the schema stands; exit 1 unless it is current."""
        status = app.extensions["shop"].store.schema_status()
        click.echo(status.message())
        if not status.ready:
            raise SystemExit(1)

    @app.cli.command("reconcile")
    @click.option(
        "--limit",
        default=50,
        show_default=True,
        type=click.IntRange(min=1),
        help="Most claims to settle in this pass.",
    )
    def reconcile(limit: int) -> None:
        """Settle checkouts, saved-wallet charges and removals whose outcome is not known yet
        (run it from cron)."""
        report = app.extensions["shop"].returns.reconcile(limit=limit)
        click.echo(report.summary())
        saved = app.extensions["saved_wallet"]  # storefront/views/wallet.py WalletServices
        charges = saved.charges.reconcile(limit=limit)
        if charges.results:  # one line per kind of work, only when there was some
            click.echo(f"saved-wallet charges: {charges.summary()}")
        removals = saved.removal.reconcile(limit=limit)
        if removals:
            removed = sum(1 for outcome in removals if outcome.reason != "busy")
            click.echo(f"saved-wallet removals: {removed} of {len(removals)} settled")
        console_line = reconcile_console(app, limit=limit)
        if console_line:
            click.echo(console_line)
