"""LOG_FORMAT (docs/contract.md): today's text lines by default, or one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, g

from amazonpay.errors import ConfigurationError
from config import Settings
from storefront.logs import LogFormat, log_format, shop_handler
from tests.support.servers import REPO_ROOT, clean_environment, generate_key_pair

REFERENCE = "AbCdEfGhIjKlMnOpQrStUv"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, LogFormat.TEXT),
        ("", LogFormat.TEXT),
        ("text", LogFormat.TEXT),
        ("JSON", LogFormat.JSON),
    ],
)
def test_log_format_is_text_unless_json_is_asked(raw: str | None, expected: LogFormat) -> None:
    assert log_format(raw) is expected
    env = {} if raw is None else {"LOG_FORMAT": raw}
    assert Settings.from_env(env).log_format is expected


def test_any_other_log_format_stops_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^LOG_FORMAT: expected text or json, got 'xml'$"):
        Settings.from_env({"LOG_FORMAT": "xml"})


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, list[logging.Handler]]]:
    logger = logging.getLogger("storefront.test_logs")
    stream = io.StringIO()
    handlers: list[logging.Handler] = []
    yield logger, stream, handlers
    for handler in handlers:
        logger.removeHandler(handler)


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/checkout/result/<reference>")
    def result(reference: str) -> str:
        return reference

    return app


def test_json_line_carries_request_route_reference_and_amazon_request_id(
    captured: tuple[logging.Logger, io.StringIO, list[logging.Handler]],
) -> None:
    logger, stream, handlers = captured
    handlers.append(shop_handler(LogFormat.JSON, stream))
    logger.addHandler(handlers[-1])

    with _app().test_request_context(f"/checkout/result/{REFERENCE}"):
        g.request_id = "req-0123456789"
        logger.warning(
            "amazon said %s",
            "no",
            extra={"amazon_request_id": "amzn-req-1", "amazon_operation": "x"},
        )

    line = json.loads(stream.getvalue())
    assert line["level"] == "WARNING"
    assert line["logger"] == "storefront.test_logs"
    assert line["message"] == "amazon said no"
    assert line["request_id"] == "req-0123456789"
    assert line["route"] == "result"
    assert line["ref"] == REFERENCE
    assert line["amazon_request_id"] == "amzn-req-1"
    assert line["time"].endswith("+00:00")
    assert stream.getvalue().count("\n") == 1


def test_json_outside_a_request_and_a_hostile_ref_is_not_logged(
    captured: tuple[logging.Logger, io.StringIO, list[logging.Handler]],
) -> None:
    logger, stream, handlers = captured
    handlers.append(shop_handler(LogFormat.JSON, stream))
    logger.addHandler(handlers[-1])

    logger.warning("reconcile: nothing to do")
    with _app().test_request_context("/checkout/return?ref=<script>"):
        logger.warning("refused")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["request_id"], first["route"], first["ref"]) == ("-", None, None)
    assert second["ref"] is None


def test_text_is_todays_format(
    captured: tuple[logging.Logger, io.StringIO, list[logging.Handler]],
) -> None:
    logger, stream, handlers = captured
    handlers.append(shop_handler(LogFormat.TEXT, stream))
    logger.addHandler(handlers[-1])

    with _app().test_request_context("/"):
        g.request_id = "req-0123456789"
        logger.warning("checkout return refused: %s", "unknown-reference")

    line = stream.getvalue().rstrip("\n")
    assert line.endswith(
        " WARNING [req-0123456789] storefront.test_logs: checkout return refused: unknown-reference"
    )


APP_LOGS = """
import logging, sys
from app import create_app
app = create_app({
    "AMAZON_PAY_PUBLIC_KEY_ID": "SANDBOX-AETESTKEY0000000000000000",
    "AMAZON_PAY_PRIVATE_KEY": sys.argv[1],
    "AMAZON_PAY_ENDPOINT": "http://127.0.0.1:9",
    "DATABASE_URL": "sqlite:///" + sys.argv[2],
    "SECRET_KEY": "unit-test-secret-key-0123456789abcdef",
    "PUBLIC_URL": "http://localhost",
    "INSTANCE_PATH": sys.argv[3],
})
with app.test_request_context("/healthz"):
    logging.getLogger("storefront.checkout").info("hello from the shop")
"""


def test_create_app_installs_the_json_handler_when_logging_is_not_configured(
    tmp_path: Path,
) -> None:
    keys = generate_key_pair(tmp_path / "keys")
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            APP_LOGS,
            str(keys.private_key_path),
            str(tmp_path / "shop.db"),
            str(tmp_path / "instance"),
        ],
        cwd=REPO_ROOT,
        env=clean_environment({"LOG_FORMAT": "json"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    lines = [json.loads(line) for line in finished.stderr.splitlines()]
    assert [(line["message"], line["route"]) for line in lines] == [
        ("hello from the shop", "shop.healthz")
    ]
