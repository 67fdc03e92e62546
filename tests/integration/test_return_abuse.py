"""Hostile returns against the real simulator: a flood of made-up session ids, a replayed session
id while Amazon's Get fails, and the reconciler after a flood. Amazon calls are counted in the
simulator's request log."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from storefront.abuse import ReturnLimits
from storefront.states import CheckoutKind, ClaimState
from tests.integration.conftest import Buyer, SimulatorHarness, button_config

RESULT_URL = re.compile(r"^/checkout/result/[A-Za-z0-9_-]{22}$")
PENDING = 'data-testid="pending"'


def return_url_of(client: FlaskClient) -> str:
    """A fresh pending checkout's return URL, as one anonymous GET /wallet hands it out."""
    config = button_config(client.get("/wallet"))
    payload: dict[str, Any] = json.loads(config["createCheckoutSessionConfig"]["payloadJSON"])
    url: str = payload["webCheckoutDetails"]["checkoutResultReturnUrl"]
    return url


def gets_other_than(simulator: SimulatorHarness, session_id: str) -> int:
    return sum(
        1
        for e in simulator.operations("GetCheckoutSession")
        if e.get("checkout_session_id") != session_id
    )


def run_reconcile(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    first_line: str = result.output.splitlines()[0]
    return first_line


def test_500_made_up_returns_cost_at_most_ten_gets_and_a_buyer_pays_at_the_first_try(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    stranger = app.test_client(use_cookies=False)  # cookie-less, from the buyer's own address
    trip = None
    own_return = ""
    for i in range(500):
        if i % 10 == 0:  # a fresh ref costs one anonymous page view
            own_return = return_url_of(stranger)
        if i == 250:
            trip = buyer.pay("/wallet", "1111")
            assert trip.response.status_code == 303
            assert RESULT_URL.match(trip.response.headers["Location"])
        junk = stranger.get(f"{own_return}&amazonCheckoutSessionId={uuid.uuid4()}")
        assert (junk.status_code, junk.headers["Location"]) == (303, "/wallet")

    assert trip is not None
    assert "Amazon Pay is saved" in buyer.follow(trip.response).get_data(as_text=True)
    # The stated bound: one client's stranger share per window (README "Limits").
    assert gets_other_than(simulator, trip.checkout_session_id) <= ReturnLimits().stranger.limit
    claims = app.extensions["shop"].store.ledger.undecided(datetime.now(UTC), limit=1000)
    assert claims == []  # every made-up id Amazon was asked about is failed, not pending


@pytest.mark.parametrize("reconcile_between", [False, True])
def test_a_session_id_replayed_on_another_ref_while_get_fails_is_still_its_owners(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness, reconcile_between: bool
) -> None:
    session_id, _ = buyer.press_button("/wallet")
    victim_return = buyer.choose(session_id, "1111")
    attacker = app.test_client()
    own_return = return_url_of(attacker)
    simulator.fault(
        "GetCheckoutSession", kind="status", status=503, count=20, checkout_session_id=session_id
    )

    hijack = attacker.get(f"{own_return}&amazonCheckoutSessionId={session_id}")

    assert hijack.status_code == 200
    assert PENDING in hijack.get_data(as_text=True)
    simulator.http.post(f"{simulator.base_url}/_simulator/reset", json={}, timeout=5)
    if reconcile_between:
        assert run_reconcile(app) == "reconciled 1: 0 completed, 1 failed, 0 still pending"

    owner = buyer.client.get(victim_return)

    assert owner.status_code == 303
    assert RESULT_URL.match(owner.headers["Location"])
    assert "Amazon Pay is saved" in buyer.follow(owner).get_data(as_text=True)
    assert len(simulator.operations("CompleteCheckoutSession")) == 1
    assert 'data-testid="saved-method"' not in attacker.get("/wallet").get_data(as_text=True)
    again = attacker.get(f"{own_return}&amazonCheckoutSessionId={session_id}")
    assert (again.status_code, again.headers["Location"]) == (303, "/wallet")


def test_reconcile_after_a_junk_flood_settles_a_real_checkout_in_its_first_run(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    shop = app.extensions["shop"]
    store = shop.store
    # Junk a flood left pending while Amazon was down (Get never answered): 200 claims, all
    # older than the real one and more than one run's 50 slots.
    for i in range(200):
        now = datetime.now(UTC)
        pending = store.checkouts.find_or_create(
            buyer_id=f"flood-{i}".ljust(22, "x"),
            kind=CheckoutKind.WALLET_SETUP,
            amount=None,
            currency="USD",
            items=[],
            now=now,
            reuse_window=shop.pending_reuse_window,
        )
        junk = str(uuid.uuid4())
        store.ledger.claim(
            junk, pending.reference, owner="flood", now=now, lease=shop.returns.lease
        )
        store.ledger.mark_pending(junk, reason="get-unavailable", now=now)
    # And a live flood of made-up ids from many addresses while Amazon answers.
    stranger = app.test_client(use_cookies=False)
    for i in range(60):
        junk_return = f"{return_url_of(stranger)}&amazonCheckoutSessionId={uuid.uuid4()}"
        stranger.get(junk_return, environ_base={"REMOTE_ADDR": f"10.0.{i // 250}.{i % 250}"})
    # The real buyer's Complete got no answer: pending.
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")
    simulator.fault(
        "CompleteCheckoutSession",
        kind="status",
        status=503,
        count=20,
        checkout_session_id=session_id,
    )
    assert PENDING in buyer.client.get(return_url).get_data(as_text=True)
    simulator.http.post(f"{simulator.base_url}/_simulator/reset", json={}, timeout=5)
    gets = len(simulator.operations("GetCheckoutSession"))

    summary = run_reconcile(app)

    assert summary.startswith("reconciled 50: 1 completed, 49 failed")
    claim = store.ledger.get(session_id)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED
    assert len(simulator.operations("GetCheckoutSession")) - gets <= 50
