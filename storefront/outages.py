"""The shop's answer while its database is away: a 503 page that refreshes itself, never a 500.

`register_outage_pages(app)` maps the database's errors (refused, timed out, pool exhausted,
connection lost) to that page. On the return URL it says the payment is safe and will be
confirmed (docs/contract.md): nothing was decided, and the refresh settles it.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, render_template, request
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response as BaseResponse

__all__ = ["DATABASE_ERRORS", "RETRY_AFTER_SECONDS", "register_outage_pages", "unavailable_page"]

logger = logging.getLogger(__name__)

# DBAPIError covers every error the driver raises (OperationalError, InterfaceError, ...);
# the pool's own: no free connection in time, or none it could reconnect.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, DisconnectionError)
RETRY_AFTER_SECONDS = 5  # the page's own refresh (templates/unavailable.html) uses the same
_RETURN_ENDPOINT = "checkout.checkout_return"


def unavailable_page() -> BaseResponse:
    """The 503 "briefly unavailable" page for this request, with Retry-After."""
    returning = request.endpoint == _RETURN_ENDPOINT
    page = render_template(
        "unavailable.html", returning=returning, refresh_seconds=RETRY_AFTER_SECONDS
    )
    response = current_app.make_response((page, 503))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _database_error(error: Exception) -> BaseResponse:
    # The class names only: SQLAlchemy's message carries the statement and its parameters,
    # which hold checkout references and session ids.
    original = getattr(error, "orig", None)
    logger.warning(
        "database unavailable on %s: %s%s",
        request.endpoint,
        type(error).__name__,
        f" ({type(original).__name__})" if original is not None else "",
    )
    return unavailable_page()


def _service_unavailable(_error: ServiceUnavailable) -> BaseResponse:
    return unavailable_page()


def register_outage_pages(app: Flask) -> None:
    """Answer the database's errors, and every 503, with the "briefly unavailable" page."""
    if app.extensions.get("outage_pages"):
        return  # registered already (the wiring and a test may both call it)
    app.extensions["outage_pages"] = True
    for error in DATABASE_ERRORS:
        app.register_error_handler(error, _database_error)
    app.register_error_handler(ServiceUnavailable, _service_unavailable)
