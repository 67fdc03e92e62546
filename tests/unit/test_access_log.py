"""The access log written by gunicorn.conf.py's logger never holds a checkout's identifiers.

The logger is called the way gunicorn's workers call it (response, request, WSGI environ,
duration), then once for real: gunicorn serving the offline app, a return URL requested over HTTP.
"""

from __future__ import annotations

import runpy
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from gunicorn.config import Config

from tests.support.servers import REPO_ROOT, clean_environment, start_gunicorn, stopping

SESSION_ID = "123e4567-e89b-12d3-a456-426614174000"
RETURN_URL = f"/checkout/return?ref=abc&amazonCheckoutSessionId={SESSION_ID}"
MASKED_RETURN_URL = "/checkout/return?ref=***&amazonCheckoutSessionId=***"
EVERY_URL_ATOM = (
    '"%(r)s" %(U)s %(q)s "%(f)s" %({referer}i)s %({raw_uri}e)s %({query_string}e)s'
    " %({location}o)s %(s)s"
)


@pytest.fixture(scope="module")
def conf() -> dict[str, Any]:
    """gunicorn.conf.py's settings, read the way gunicorn reads them (executed as a file)."""
    return runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"GET {RETURN_URL} HTTP/1.1", f"GET {MASKED_RETURN_URL} HTTP/1.1"),
        (f"ref=abc&amazonCheckoutSessionId={SESSION_ID}", "ref=***&amazonCheckoutSessionId=***"),
        (
            f"https://shop.example{RETURN_URL}#top",
            f"https://shop.example{MASKED_RETURN_URL}#top",
        ),
        (
            "/wallet?request_id=r-1;charge_permission_id=S01-1",
            "/wallet?request_id=***;charge_permission_id=***",
        ),
        ("/x?REF=abc&AmazonCheckoutSessionID=x", "/x?REF=***&AmazonCheckoutSessionID=***"),
        ("/x?ref=a&ref=b&ref=", "/x?ref=***&ref=***&ref=***"),
        ("/checkout/result/ord-7f3a9c?x=1", "/checkout/result/***?x=1"),
        # Other parameters and look-alikes are kept: only the named values are secrets.
        (
            "/cart?page=2&xref=abc&refund=5&prefix_ref=1",
            "/cart?page=2&xref=abc&refund=5&prefix_ref=1",
        ),
        ("/checkout/result/", "/checkout/result/"),
        ("-", "-"),
    ],
)
def test_mask_secrets(conf: dict[str, Any], text: str, masked: str) -> None:
    assert conf["mask_secrets"](text) == masked


def test_gunicorn_loads_the_masking_logger_from_the_settings(conf: dict[str, Any]) -> None:
    cfg = Config()
    cfg.set("logger_class", conf["logger_class"])

    assert cfg.logger_class is conf["MaskingLogger"]


@pytest.fixture
def access_log(conf: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A MaskingLogger writing the access log to a file, with a format of every URL atom."""
    path = tmp_path / "access.log"
    cfg = Config()
    cfg.set("accesslog", str(path))
    cfg.set("access_log_format", EVERY_URL_ATOM)
    logger = conf["logger_class"](cfg)
    yield logger, path
    # gunicorn's loggers are process-wide ("gunicorn.access"): leave them as they were.
    for log in (logger.access_log, logger.error_log):
        for handler in list(log.handlers):
            if getattr(handler, "_gunicorn", False):
                log.removeHandler(handler)
                handler.close()


def test_every_url_atom_of_a_return_request_is_masked(access_log: tuple[Any, Path]) -> None:
    logger, path = access_log
    referer = f"https://shop.example{RETURN_URL}"
    # What a gunicorn worker passes: its Response and Request objects (headers as name/value
    # pairs, request header names upper-cased) and the WSGI environ.
    response = SimpleNamespace(
        status="303 SEE OTHER", sent=0, headers=[("Location", "/checkout/result/ord-7f3a9c")]
    )
    request = SimpleNamespace(headers=[("HOST", "shop.example"), ("REFERER", referer)])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": RETURN_URL,
        "PATH_INFO": "/checkout/return",
        "QUERY_STRING": RETURN_URL.split("?", 1)[1],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": referer,
    }

    logger.access(response, request, environ, timedelta(milliseconds=12))

    masked_referer = f"https://shop.example{MASKED_RETURN_URL}"
    assert path.read_text() == (
        f'"GET {MASKED_RETURN_URL} HTTP/1.1" /checkout/return ref=***&amazonCheckoutSessionId=***'
        f' "{masked_referer}" {masked_referer} {MASKED_RETURN_URL}'
        " ref=***&amazonCheckoutSessionId=*** /checkout/result/*** 303\n"
    )


def test_a_request_without_secrets_is_logged_as_it_came(access_log: tuple[Any, Path]) -> None:
    logger, path = access_log
    response = SimpleNamespace(status="200 OK", sent=5, headers=[])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/cart?page=2",
        "PATH_INFO": "/cart",
        "QUERY_STRING": "page=2",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }

    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(0))

    assert (
        path.read_text()
        == '"GET /cart?page=2 HTTP/1.1" /cart page=2 "-" - /cart?page=2 page=2 - 200\n'
    )


def test_gunicorn_serving_the_app_masks_the_return_url(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    server = start_gunicorn(
        env=clean_environment({"APP_INSTANCE_PATH": str(tmp_path / "instance")}),
        log_dir=tmp_path / "logs",
        workers=1,
        threads=2,
        extra_args=["-c", "gunicorn.conf.py", "--access-logfile", str(log_path)],
    )
    with stopping(server):
        response = requests.get(
            server.base_url + RETURN_URL,
            headers={"Referer": server.base_url + RETURN_URL},
            allow_redirects=False,
            timeout=30,
        )
        assert response.is_redirect  # a foreign session id: back to checkout
        deadline = time.monotonic() + 10
        while "/checkout/return" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)

    lines = [line for line in log_path.read_text().splitlines() if "/checkout/return" in line]
    assert len(lines) == 1, log_path.read_text()
    assert f"GET {MASKED_RETURN_URL} HTTP/1.1" in lines[0]
    assert f'"{server.base_url}{MASKED_RETURN_URL}"' in lines[0]  # the Referer
    assert "abc" not in lines[0]
    assert SESSION_ID not in lines[0]
