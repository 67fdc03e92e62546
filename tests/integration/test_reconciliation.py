"""Checkouts the buyer walked away from are settled by `flask reconcile`, against the simulator.

Each test runs on SQLite and PostgreSQL (`database_url`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from storefront.checkout import OutcomeKind, ReconcileReport
from storefront.states import ClaimState
from tests.integration.conftest import AppFactory, Buyer, SimulatorHarness

SUMMARY = "reconciled {}: {} completed, {} failed, {} still pending"


def completes(simulator: SimulatorHarness, session_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in simulator.operations("CompleteCheckoutSession")
        if e.get("checkout_session_id") == session_id
    ]


def run_reconcile(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 0, result.output
    output: str = result.output.strip()
    return output


def test_a_dropped_complete_left_behind_is_settled_by_the_cli(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")
    # Amazon applies Complete, but no answer ever reaches the shop (every retry is dropped).
    simulator.fault(
        "CompleteCheckoutSession", kind="drop", count=50, checkout_session_id=session_id
    )

    first = buyer.client.get(return_url)

    assert first.status_code == 200
    assert 'data-testid="pending"' in first.get_data(as_text=True)
    store = app.extensions["shop"].store
    claim = store.ledger.get(session_id)
    assert claim is not None
    assert claim.status == ClaimState.PENDING
    tried = completes(simulator, session_id)
    assert tried
    assert len({e["idempotency_key"] for e in tried}) == 1  # every retry: the same key
    # The buyer closes the tab. Cron runs the reconciler.

    assert run_reconcile(app) == SUMMARY.format(1, 1, 0, 0)

    claim = store.ledger.get(session_id)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED
    assert claim.charge_permission_id
    reference = claim.reference
    result = buyer.client.get(f"/checkout/result/{reference}")
    assert result.status_code == 200
    assert claim.charge_permission_id in result.get_data(as_text=True)
    wallet = buyer.client.get("/wallet").get_data(as_text=True)
    assert wallet.count('data-testid="saved-method"') == 1
    assert claim.charge_permission_id in wallet
    # One effective completion: the same key on every try (so Amazon applied only the first),
    # and the reconciler read the Completed session instead of completing again.
    assert completes(simulator, session_id) == tried
    session = app.extensions["shop"].client.get_checkout_session(session_id)
    assert session.state == "Completed"
    assert session.charge_permission_id == claim.charge_permission_id
    calls = len(simulator.requests_log())
    # Nothing left: a second pass and the buyer's old return URL call Amazon no more.
    assert run_reconcile(app) == SUMMARY.format(0, 0, 0, 0)
    again = buyer.client.get(return_url)
    assert (again.status_code, again.headers["Location"]) == (303, f"/checkout/result/{reference}")
    assert len(simulator.requests_log()) == calls


def test_two_reconcilers_and_a_refresh_racing_complete_once(
    app_factory: AppFactory, client: FlaskClient, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    buyer.add_to_cart("mug")
    session_id, _ = buyer.press_button("/checkout")
    return_url = buyer.choose(session_id, "1111")
    simulator.fault(
        "CompleteCheckoutSession",
        kind="status",
        status=503,
        count=20,
        checkout_session_id=session_id,
    )
    assert 'data-testid="pending"' in buyer.client.get(return_url).get_data(as_text=True)
    simulator.http.post(f"{simulator.base_url}/_simulator/reset", json={}, timeout=5)
    # Amazon is back, and slow: the first Complete holds its claim while the others arrive.
    simulator.fault(
        "CompleteCheckoutSession", kind="delay", delay_ms=400, checkout_session_id=session_id
    )
    reconcilers = [app_factory(), app_factory()]  # two more instances on the same database
    start = threading.Barrier(3)

    def reconcile(instance: Flask) -> ReconcileReport:
        start.wait()
        report: ReconcileReport = instance.extensions["shop"].returns.reconcile()
        return report

    def refresh() -> int:
        start.wait()
        return buyer.client.get(return_url).status_code

    with ThreadPoolExecutor(3) as pool:
        reports = [pool.submit(reconcile, instance) for instance in reconcilers]
        status = pool.submit(refresh)
        results = [f.result(timeout=30) for f in reports]
        seen = status.result(timeout=30)

    assert seen in (200, 303)  # success, or "being confirmed" while a reconciler holds it
    assert len(completes(simulator, session_id)) == 1
    assert sum(r.count(OutcomeKind.SUCCESS) for r in results) <= 1
    assert all(r.count(OutcomeKind.FAILURE) == 0 for r in results)
    claim = app_factory().extensions["shop"].store.ledger.get(session_id)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED
    final = buyer.client.get(return_url)
    assert final.status_code == 303
    assert "your order is confirmed" in buyer.follow(final).get_data(as_text=True)
