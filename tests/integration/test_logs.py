"""No log line, text or JSON, ever holds key material, a signature, a secret or a whole payload."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from storefront.logs import LogFormat, shop_handler
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness
from tests.support.servers import KeyPair

SECRET_KEY = "log-test-secret-key-6d1f0c9a27e84b53a1c2"
ADMIN_PASSWORD = "log-test-admin-password-93b2e7f0"


@pytest.fixture(params=[LogFormat.TEXT, LogFormat.JSON], ids=["text", "json"])
def log_lines(request: pytest.FixtureRequest) -> Iterator[tuple[LogFormat, io.StringIO]]:
    """Every record of every logger, at DEBUG, through the handler configure_logging installs."""
    stream = io.StringIO()
    fmt: LogFormat = request.param
    handler = shop_handler(fmt, stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in ("storefront", "amazonpay", "app")]
    levels = [(logger, logger.level) for logger in [root, *loggers]]
    root.addHandler(handler)
    for logger, _ in levels:
        logger.setLevel(logging.DEBUG)
    yield fmt, stream
    root.removeHandler(handler)
    for logger, level in levels:
        logger.setLevel(level)


def test_wallet_setup_and_checkout_log_no_secret(
    app_factory: AppFactory,
    simulator: SimulatorHarness,
    key_pair: KeyPair,
    log_lines: tuple[LogFormat, io.StringIO],
) -> None:
    fmt, stream = log_lines
    app = app_factory(SECRET_KEY=SECRET_KEY, ADMIN_PASSWORD=ADMIN_PASSWORD)
    buyer = Buyer(app.test_client(), simulator)
    wallet = buyer.pay("/wallet", "1111")
    buyer.add_to_cart("mug")
    checkout = buyer.pay("/checkout", "1111")
    # A refused return and an Amazon error are logged too: their lines must be as clean.
    buyer.client.get("/checkout/return?ref=nope&amazonCheckoutSessionId=nope")
    simulator.fault("GetCheckoutSession", kind="status", status=503, count=5)
    buyer.add_to_cart("mug")
    buyer.pay("/checkout", "1111")
    buyer.http.close()
    assert wallet.response.status_code == checkout.response.status_code == 303

    lines = stream.getvalue().splitlines()
    assert any("complete_checkout_session" in line for line in lines)  # the capture works
    if fmt is LogFormat.JSON:
        records = [json.loads(line) for line in lines]
        assert any(r["amazon_request_id"] and r["route"] for r in records)
        assert any(r["ref"] and r["request_id"] != "-" for r in records)
    pem = key_pair.private_key_path.read_text()
    key_body = [row for row in pem.splitlines() if row and not row.startswith("-----")]
    forbidden = [
        "PRIVATE KEY",
        *key_body,
        "Signature=",
        "SignedHeaders=",
        "AMZN-PAY-RSASSA",
        SECRET_KEY,
        ADMIN_PASSWORD,
    ]
    for trip in (wallet, checkout):
        session_config = trip.config["createCheckoutSessionConfig"]
        forbidden += [session_config["signature"], session_config["payloadJSON"]]
    for line in lines:
        for secret in forbidden:
            assert secret not in line, f"{secret[:20]}... logged: {line[:200]}"
        # A whole payload (ours or Amazon's) would show its JSON keys.
        for key in ('"webCheckoutDetails"', '"paymentDetails"', '"chargeAmount"'):
            assert key not in line, line[:200]
