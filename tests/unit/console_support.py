"""Shared set-up for the console's use-case tests: a simulator on a thread, a client signed for
it, a store on SQLite or PostgreSQL, and orders paid for real at the simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.client import AmazonPayClient, RetryPolicy
from amazonpay.models import Price
from amazonpay.simulator import SIMULATOR_STORE_ID, Simulator, serve_in_thread
from storefront.captures import ChargeDesk
from storefront.db import Store
from storefront.db.audit import StaffAudit
from storefront.db.leases import LeaseKeeper
from storefront.db.refunds import RefundRows
from storefront.operations import Operations
from storefront.refunds import RefundDesk
from storefront.states import OrderState

KEY_ID = "SANDBOX-CONSOLE-TEST"


@dataclass
class Sim:
    base_url: str
    http: requests.Session

    def control(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.base_url}/_simulator/{path}", json=body, timeout=5)

    def calls(self, operation: str) -> list[dict[str, Any]]:
        log = self.http.get(f"{self.base_url}/_simulator/requests", timeout=5).json()
        return [e for e in log if e.get("operation") == operation]


@pytest.fixture
def sim(private_key: rsa.RSAPrivateKey) -> Iterator[Sim]:
    simulator = Simulator(public_keys={KEY_ID: private_key.public_key()})
    handle = serve_in_thread(simulator, "127.0.0.1", 0)
    http = requests.Session()
    yield Sim(str(handle.base_url), http)
    http.close()
    handle.shutdown()


def make_client(sim: Sim, private_key: rsa.RSAPrivateKey, attempts: int = 3) -> AmazonPayClient:
    return AmazonPayClient(
        public_key_id=KEY_ID,
        private_key=private_key,
        endpoint=sim.base_url,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.05, max_total=1.0),
    )


def clock() -> datetime:
    return datetime.now(UTC)


def operations(store: Store) -> Operations:
    lease = timedelta(seconds=20)
    return Operations(
        store,
        clock=clock,
        sleep=time.sleep,
        lease=lease,
        wait=timedelta(seconds=5),
        leases=LeaseKeeper(store.ledger, lease=lease, clock=clock, every_seconds=5),
        poll_interval=0.02,
    )


@dataclass
class Desks:
    refunds: RefundDesk
    charges: ChargeDesk
    rows: RefundRows
    audit: StaffAudit
    client: AmazonPayClient


def desks(store: Store, client: AmazonPayClient) -> Desks:
    audit = StaffAudit(store.engine)
    rows = RefundRows(store.engine, store.orders)
    ops = operations(store)
    return Desks(
        refunds=RefundDesk(client, store, ops, rows, audit, clock=clock),
        charges=ChargeDesk(client, store, ops, audit, clock=clock),
        rows=rows,
        audit=audit,
        client=client,
    )


_counter = iter(range(10**6))
_counter_lock = threading.Lock()


def paid_order(
    store: Store,
    client: AmazonPayClient,
    sim: Sim,
    amount: str = "20.00",
    *,
    intent: str = "AuthorizeWithCapture",
) -> str:
    """An order whose one-time checkout really completed at the simulator."""
    with _counter_lock:
        n = next(_counter)
    reference = f"order{n:04d}{'x' * 13}"
    session = client.create_checkout_session(
        {
            "storeId": SIMULATOR_STORE_ID,
            "webCheckoutDetails": {
                "checkoutResultReturnUrl": f"http://localhost/checkout/return?ref={reference}",
                "checkoutMode": "ProcessOrder",
            },
            "paymentDetails": {
                "paymentIntent": intent,
                "canHandlePendingAuthorization": True,
                "chargeAmount": {"amount": amount, "currencyCode": "USD"},
            },
            "merchantMetadata": {"merchantReferenceId": reference},
        },
        idempotency_key=f"cs{reference}"[:32],
    )
    played = sim.control(f"sessions/{session.checkout_session_id}/outcome", {"outcome": "success"})
    assert played.status_code == 200, played.text
    done = client.complete_checkout_session(
        session.checkout_session_id, Price.of(amount, "USD"), idempotency_key=f"cc{reference}"[:32]
    ).checkout_session
    authorized = intent == "Authorize"
    with store.engine.begin() as conn:
        store.orders.add(
            conn,
            reference=reference,
            buyer_id="b" * 22,
            amount=Decimal(amount),
            currency="USD",
            items=[],
            status=OrderState.AUTHORIZED if authorized else OrderState.PAID,
            checkout_session_id=session.checkout_session_id,
            charge_permission_id=done.charge_permission_id,
            charge_id=done.charge_id,
            now=clock(),
            captured_amount=Decimal(0) if authorized else None,
            authorization_expires_at=clock() + timedelta(days=30) if authorized else None,
        )
    return reference
