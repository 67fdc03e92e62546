"""Log lines tagged with the request: human-readable text (default) or JSON, by `LOG_FORMAT`.

docs/contract.md: `LOG_FORMAT` is `text` or `json` (one object a line). Messages never carry key
material, signatures, secrets or payloads; the JSON adds structured fields, not more content.
"""

from __future__ import annotations

import enum
import json
import logging
from datetime import UTC, datetime
from typing import IO, Any

from flask import Flask, g, has_request_context, request
from flask.logging import default_handler

from amazonpay.errors import ConfigurationError
from storefront.checkout import valid_reference

__all__ = ["JsonFormatter", "LogFormat", "configure_logging", "log_format", "shop_handler"]

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
# Loggers our code writes to: the use cases, the client library and Flask's app logger.
_OUR_LOGGERS = ("storefront", "amazonpay")


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


def log_format(value: str | None) -> LogFormat:
    """`LOG_FORMAT`'s value; empty or unset means text (config.py reads it once)."""
    raw = (value or "text").strip().lower()
    try:
        return LogFormat(raw)
    except ValueError:
        raise ConfigurationError(f"LOG_FORMAT: expected text or json, got {raw!r}") from None


class _RequestFilter(logging.Filter):
    """Adds the request's id, route (endpoint) and our checkout reference to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not has_request_context():
            record.request_id = "-"
            record.route = None
            record.ref = getattr(record, "ref", None)
            return True
        record.request_id = g.get("request_id", "-")
        record.route = request.endpoint
        if getattr(record, "ref", None) is None:
            record.ref = _request_reference()
        return True


def _request_reference() -> str | None:
    """Our reference when this request names one: the result page's path or the return's `ref`.

    Only a value of the reference's own shape: anything else a client sent is not logged.
    """
    candidates = [(request.view_args or {}).get("reference"), request.args.get("ref")]
    for value in candidates:
        if isinstance(value, str) and valid_reference(value):
            return value
    return None


class JsonFormatter(logging.Formatter):
    """One object a line: time, level, logger, message, request_id, route, ref, Amazon's id."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "route": getattr(record, "route", None),
            "ref": getattr(record, "ref", None),
            "amazon_request_id": getattr(record, "amazon_request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _ShopHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks our handler so a second create_app in one process does not add another."""


def shop_handler(fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """The handler configure_logging installs: request fields added, `fmt` applied."""
    handler = _ShopHandler(stream)
    handler.addFilter(_RequestFilter())
    handler.setFormatter(
        JsonFormatter() if fmt is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(app: Flask, fmt: LogFormat) -> None:
    """Log lines tagged with the request, unless the host already configured logging.

    Under gunicorn or `flask run` nothing handles our loggers, so we add one handler per process.
    When the root logger has handlers (pytest, an operator's dictConfig) we leave them be and
    keep propagation, so their capture and formatting still see our records.
    """
    if logging.getLogger().handlers:
        return
    app.logger.removeHandler(default_handler)  # ours below carries the request id
    for name in (*_OUR_LOGGERS, app.logger.name):
        logger = logging.getLogger(name)
        if any(isinstance(h, _ShopHandler) for h in logger.handlers):
            continue
        logger.addHandler(shop_handler(fmt))
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
