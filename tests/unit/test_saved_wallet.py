"""Paying with a saved wallet, the use case without Flask, against the simulator over HTTP, on
SQLite and a real PostgreSQL: every outcome, the lost answer, the decline and its retry, a
takeover after a crash, a foreign reference or wallet (no Amazon call), and one payment per
cart whichever way it is paid (docs/contract.md "Using a saved wallet")."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.client import AmazonPayClient, RetryPolicy, idempotency_key_for
from amazonpay.models import ChargeInitiator, Price
from amazonpay.simulator import SIMULATOR_STORE_ID, Simulator, serve_in_thread
from storefront.checkout import OutcomeKind, ReturnHandler
from storefront.db import Store
from storefront.db.leases import LeaseKeeper
from storefront.operations import Operations, TurnKind
from storefront.saved_wallet import (
    ChargeOrder,
    SavedWalletCharges,
    charge_intent,
    charge_key,
)
from storefront.states import (
    CheckoutKind,
    ClaimState,
    OrderSource,
    OrderState,
    PendingState,
    WalletState,
)
from storefront.wallet_state import WalletStates

KEY_ID = "SANDBOX-AETESTKEY0000000000000000"
BUYER = "buyerAAAAAAAAAAAAAAAAA"
OTHER = "buyerBBBBBBBBBBBBBBBBB"


class Clock:
    """The shop's clock: real time plus an offset tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += timedelta(seconds=seconds)


@dataclass
class Amazon:
    """The simulator on a real port, and its control API."""

    base_url: str
    http: requests.Session

    def control(self, path: str, payload: Any = None) -> Any:
        response = self.http.post(f"{self.base_url}/_simulator/{path}", json=payload or {})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.http.get(f"{self.base_url}/_simulator/requests").json()
        return entries

    def operations(self) -> list[str]:
        return [e["operation"] for e in self.log()]

    def calls(self, operation: str) -> list[dict[str, Any]]:
        return [e for e in self.log() if e["operation"] == operation]

    def forget_calls(self) -> None:
        self.control("reset", {"data": False})


@pytest.fixture
def amazon(public_key: rsa.RSAPublicKey) -> Iterator[Amazon]:
    simulator = Simulator(public_keys={KEY_ID: public_key})
    handle = serve_in_thread(simulator, "127.0.0.1", 0)
    with requests.Session() as http:
        yield Amazon(handle.base_url, http)
    handle.shutdown()


@dataclass
class Shop:
    store: Store
    client: AmazonPayClient
    clock: Clock
    operations: Operations
    states: WalletStates
    charges: SavedWalletCharges
    amazon: Amazon


@pytest.fixture
def shop(store: Store, amazon: Amazon, private_key: rsa.RSAPrivateKey) -> Iterator[Shop]:
    clock = Clock()
    client = AmazonPayClient(
        public_key_id=KEY_ID,
        private_key=private_key,
        endpoint=amazon.base_url,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, max_total=2.0),
    )
    lease = timedelta(seconds=20)
    operations = Operations(
        store,
        clock=clock,
        sleep=time.sleep,
        lease=lease,
        wait=timedelta(seconds=2),
        leases=LeaseKeeper(store.ledger, lease=lease, clock=clock, every_seconds=60),
        poll_interval=0.02,
    )
    states = WalletStates(client, store, clock=clock)
    charges = SavedWalletCharges(client, store, operations, states, clock=clock)
    yield Shop(store, client, clock, operations, states, charges, amazon)
    client.close()


def save_wallet(shop: Shop, buyer: str = BUYER, *, fresh: bool = True) -> str:
    """A saved wallet at Amazon (card 1111) and in our table; -> its charge permission id."""
    session = shop.client.create_checkout_session(
        {
            "storeId": SIMULATOR_STORE_ID,
            "chargePermissionType": "PaymentMethodOnFile",
            "paymentMethodOnFileMetadata": {"setupOnly": True},
            "webCheckoutDetails": {
                "checkoutResultReturnUrl": "https://shop.example/checkout/return",
                "checkoutMode": "ProcessOrder",
            },
            "paymentDetails": {"paymentIntent": "Confirm"},
        },
        idempotency_key=uuid.uuid4().hex,
    )
    sid = session.checkout_session_id
    shop.amazon.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    completed = shop.client.complete_checkout_session(sid, None, idempotency_key=uuid.uuid4().hex)
    permission_id = completed.checkout_session.charge_permission_id
    assert permission_id
    with shop.store.engine.begin() as conn:
        shop.store.wallets.add(
            conn,
            buyer_id=buyer,
            charge_permission_id=permission_id,
            checkout_session_id=sid,
            reference=f"setup{uuid.uuid4().hex[:17]}",
            now=shop.clock(),
        )
    if not fresh:
        with shop.store.engine.begin() as conn:
            shop.store.wallets.mark_stale(conn, permission_id)
    shop.amazon.forget_calls()
    return permission_id


def cart(shop: Shop, buyer: str = BUYER, amount: str = "12.50") -> str:
    return shop.store.checkouts.find_or_create(
        buyer_id=buyer,
        kind=CheckoutKind.ONE_TIME,
        amount=Decimal(amount),
        currency="USD",
        items=[{"name": "Mug", "quantity": 1}],
        now=shop.clock(),
        reuse_window=timedelta(hours=1),
    ).reference


def script(shop: Shop, permission_id: str, outcome: str, count: int = 1, **extra: Any) -> None:
    shop.amazon.control(
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": outcome, "count": count, **extra},
    )


def pay(shop: Shop, ref: str, permission_id: str, buyer: str = BUYER) -> Any:
    return shop.charges.pay(buyer, [ref], [permission_id])


# -- charged --------------------------------------------------------------------------------


def test_a_fresh_wallet_is_charged_in_one_round_trip_and_the_order_recorded(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)

    outcome = pay(shop, ref, wallet)

    assert (outcome.kind, outcome.reference) == (OutcomeKind.SUCCESS, ref)
    assert shop.amazon.operations() == ["CreateCharge"]
    [call] = shop.amazon.calls("CreateCharge")
    assert call["idempotency_key"] == idempotency_key_for(charge_key(ref, 1))
    order = shop.store.orders.get(ref)
    assert order is not None
    assert (order.source, order.status, order.amount, order.captured_amount) == (
        OrderSource.SAVED_WALLET,
        OrderState.PAID,
        Decimal("12.50"),
        Decimal("12.50"),
    )
    pending = shop.store.checkouts.get(ref)
    assert pending is not None
    assert pending.state == PendingState.COMPLETED
    charge = shop.client.get_charge(order.charge_id or "")
    assert charge.charge_amount == Price.of("12.50", "USD")
    assert charge.merchant_reference_id == ref
    assert charge.state == "Captured"
    # A double submit, a second tab, a refresh: the recorded outcome, no call.
    again = pay(shop, ref, wallet)
    assert again.kind is OutcomeKind.SUCCESS
    assert shop.charges.settle(ref) == again
    assert len(shop.amazon.log()) == 2  # CreateCharge and this test's GetCharge


def test_a_stale_wallet_is_checked_first_two_round_trips(shop: Shop) -> None:
    wallet = save_wallet(shop, fresh=False)
    ref = cart(shop)

    outcome = pay(shop, ref, wallet)

    assert outcome.kind is OutcomeKind.SUCCESS
    assert shop.amazon.operations() == ["GetChargePermission", "CreateCharge"]
    method = shop.store.wallets.get(wallet)
    assert method is not None
    assert method.payment_descriptor == "Visa ****1111"
    assert shop.states.is_fresh(method)


def test_fresh_means_confirmed_within_five_minutes(shop: Shop) -> None:
    wallet = save_wallet(shop)
    shop.clock.advance(6 * 60)
    outcome = pay(shop, cart(shop), wallet)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert shop.amazon.operations() == ["GetChargePermission", "CreateCharge"]


# -- refused before Amazon ------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["other-buyers-cart", "other-buyers-wallet", "malformed", "twice", "missing", "wallet-setup"],
)
def test_a_foreign_or_malformed_form_sends_nothing_to_amazon(shop: Shop, case: str) -> None:
    mine = save_wallet(shop)
    theirs = save_wallet(shop, OTHER)
    my_cart, their_cart = cart(shop), cart(shop, OTHER)
    setup = shop.store.checkouts.find_or_create(
        buyer_id=BUYER,
        kind=CheckoutKind.WALLET_SETUP,
        amount=None,
        currency="USD",
        items=[],
        now=shop.clock(),
        reuse_window=timedelta(hours=1),
    ).reference
    refs, ids = {
        "other-buyers-cart": ([their_cart], [mine]),
        "other-buyers-wallet": ([my_cart], [theirs]),
        "malformed": ([my_cart + "'"], [mine]),
        "twice": ([my_cart, my_cart], [mine]),
        "missing": ([my_cart], []),
        "wallet-setup": ([setup], [mine]),
    }[case]

    outcome = shop.charges.pay(BUYER, refs, ids)

    assert outcome.kind is OutcomeKind.FAILURE
    assert shop.amazon.log() == []
    assert shop.store.ledger.for_reference(my_cart) == []
    assert shop.store.ledger.for_reference(their_cart) == []


# -- declines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "count"),
    # ProcessingFailure is a 500: the client's own three tries are each a new attempt.
    [("SoftDeclined", 1), ("ProcessingFailure", 3)],
)
def test_a_soft_decline_is_retried_once_under_a_new_key_after_checking_chargeable(
    shop: Shop, outcome: str, count: int
) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, outcome, count)

    result = pay(shop, ref, wallet)

    assert result.kind is OutcomeKind.SUCCESS
    operations = shop.amazon.operations()
    assert operations == ["CreateCharge"] * count + ["GetChargePermission", "CreateCharge"]
    keys = [e["idempotency_key"] for e in shop.amazon.calls("CreateCharge")]
    assert keys == [idempotency_key_for(charge_key(ref, 1))] * count + [
        idempotency_key_for(charge_key(ref, 2))
    ]
    first, second = shop.store.ledger.for_reference(ref)
    assert (first.status, first.reason) == (ClaimState.FAILED, outcome)
    assert second.status == ClaimState.COMPLETED
    order = shop.store.orders.get(ref)
    assert order is not None
    assert order.status == OrderState.PAID


def test_a_second_decline_is_a_failure_and_the_cart_can_be_paid_again(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, "SoftDeclined", 2)

    result = pay(shop, ref, wallet)

    assert (result.kind, result.reason) == (OutcomeKind.FAILURE, "SoftDeclined")
    assert not result.buyer_must_act
    assert len(shop.amazon.calls("CreateCharge")) == 2
    pending = shop.store.checkouts.get(ref)
    assert pending is not None
    assert pending.state == PendingState.OPEN
    assert shop.store.orders.get(ref) is None
    # The buyer presses "Pay with" again later: a new attempt, which goes through.
    again = pay(shop, ref, wallet)
    assert again.kind is OutcomeKind.SUCCESS
    assert shop.amazon.calls("CreateCharge")[-1]["idempotency_key"] == idempotency_key_for(
        charge_key(ref, 3)
    )


def test_a_double_click_that_waited_on_a_soft_decline_follows_the_same_retry(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, "SoftDeclined", 1)
    # The first attempt's answer is slow, so the second click waits on it.
    shop.amazon.control(
        "faults", {"operation": "CreateCharge", "kind": "delay", "delay_ms": 400, "count": 1}
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        clicks = [pool.submit(pay, shop, ref, wallet) for _ in range(2)]
        results = [click.result(timeout=30) for click in clicks]

    assert [r.kind for r in results] == [OutcomeKind.SUCCESS] * 2
    keys = [e["idempotency_key"] for e in shop.amazon.calls("CreateCharge")]
    assert keys == [idempotency_key_for(charge_key(ref, n)) for n in (1, 2)]


def test_a_submit_arriving_after_a_soft_decline_makes_that_retry_and_no_try_of_its_own(
    shop: Shop,
) -> None:
    """The second click lands just after the first attempt was declined, while the first
    click checks the wallet before its retry: both answer from the one retry (found by the
    soak, where the second click retried twice and charged while the first said failure)."""
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, "SoftDeclined", 2)
    shop.amazon.control(
        "faults",
        {"operation": "GetChargePermission", "kind": "delay", "delay_ms": 600, "count": 1},
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(pay, shop, ref, wallet)
        deadline = time.monotonic() + 10
        while not any(c.status == ClaimState.FAILED for c in shop.store.ledger.for_reference(ref)):
            assert time.monotonic() < deadline, "the first attempt was never declined"
            time.sleep(0.01)
        second = pay(shop, ref, wallet)
        first_result = first.result(timeout=30)

    assert (first_result.kind, second.kind) == (OutcomeKind.FAILURE, OutcomeKind.FAILURE)
    keys = [e["idempotency_key"] for e in shop.amazon.calls("CreateCharge")]
    assert keys == [idempotency_key_for(charge_key(ref, n)) for n in (1, 2)]
    assert shop.store.orders.get(ref) is None
    # The buyer's own new try after seeing the failure: attempt 3, with its own retry.
    again = pay(shop, ref, wallet)
    assert again.kind is OutcomeKind.SUCCESS
    assert shop.amazon.calls("CreateCharge")[-1]["idempotency_key"] == idempotency_key_for(
        charge_key(ref, 3)
    )


@pytest.mark.parametrize(
    "decline", ["HardDeclined", "PaymentMethodNotAllowed", "AmazonRejected", "TransactionTimedOut"]
)
def test_a_hard_decline_is_not_retried_and_says_whether_the_buyer_must_fix_it(
    shop: Shop, decline: str
) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, decline)

    result = pay(shop, ref, wallet)

    assert (result.kind, result.reason) == (OutcomeKind.FAILURE, decline)
    assert result.buyer_must_act is (decline in ("HardDeclined", "PaymentMethodNotAllowed"))
    assert result.charge_permission_id == wallet
    assert shop.amazon.operations() == ["CreateCharge"]
    assert shop.store.orders.get(ref) is None


def test_a_non_chargeable_wallet_is_not_charged_and_charges_once_fixed(shop: Shop) -> None:
    wallet = save_wallet(shop, fresh=False)
    ref = cart(shop)
    shop.amazon.control(f"charge-permissions/{wallet}/buyer", {"action": "expire_card"})
    shop.amazon.forget_calls()

    result = pay(shop, ref, wallet)

    assert (result.kind, result.reason, result.buyer_must_act) == (
        OutcomeKind.FAILURE,
        "NonChargeable",
        True,
    )
    assert shop.amazon.operations() == ["GetChargePermission"]
    method = shop.store.wallets.get(wallet)
    assert method is not None
    assert (method.state, method.reason_code) == (
        WalletState.NON_CHARGEABLE,
        "PaymentMethodExpired",
    )
    shop.amazon.control(f"charge-permissions/{wallet}/buyer", {"action": "fix_card"})
    # Needing the buyer's action is never "fresh": the next submit asks Amazon again.
    assert pay(shop, ref, wallet).kind is OutcomeKind.SUCCESS


@pytest.mark.parametrize("fresh", [False, True], ids=["stale", "fresh"])
def test_a_closed_wallet_is_marked_closed_and_never_charged_again(shop: Shop, fresh: bool) -> None:
    wallet = save_wallet(shop, fresh=fresh)
    ref = cart(shop)
    shop.amazon.control(f"charge-permissions/{wallet}/buyer", {"action": "close"})
    shop.amazon.forget_calls()

    result = pay(shop, ref, wallet)

    assert (result.kind, result.wallet_closed) == (OutcomeKind.FAILURE, True)
    method = shop.store.wallets.get(wallet)
    assert method is not None
    assert method.state == WalletState.CLOSED
    # Fresh: Create Charge refused it (422), then Get told us why. Stale: Get first.
    expected = ["CreateCharge", "GetChargePermission"] if fresh else ["GetChargePermission"]
    assert shop.amazon.operations() == expected
    shop.amazon.forget_calls()
    assert pay(shop, cart(shop, amount="3.00"), wallet).wallet_closed
    assert shop.amazon.log() == []


# -- not known yet --------------------------------------------------------------------------


@pytest.mark.parametrize("settled_by", ["refresh", "cron", "resubmit"])
def test_a_lost_answer_is_pending_and_replayed_with_the_same_key(
    shop: Shop, settled_by: str
) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    # Amazon charges, but no answer ever reaches the shop (each of the client's tries dropped).
    shop.amazon.control("faults", {"operation": "CreateCharge", "kind": "drop", "count": 3})

    first = pay(shop, ref, wallet)

    assert (first.kind, first.reason) == (OutcomeKind.PENDING, "create-charge-unknown")
    claim = shop.store.ledger.get(charge_key(ref, 1))
    assert claim is not None
    assert claim.status == ClaimState.PENDING
    if settled_by == "refresh":
        settled = shop.charges.settle(ref)
    elif settled_by == "cron":
        report = shop.charges.reconcile()
        assert report.count(OutcomeKind.SUCCESS) == 1
        settled = shop.charges.settle(ref)
    else:
        settled = pay(shop, ref, wallet)
    assert settled is not None
    assert settled.kind is OutcomeKind.SUCCESS
    calls = shop.amazon.calls("CreateCharge")
    assert {e["idempotency_key"] for e in calls} == {idempotency_key_for(charge_key(ref, 1))}
    assert [e["fault"] for e in calls] == ["drop", "drop", "drop", "replay"]  # charged once
    order = shop.store.orders.get(ref)
    assert order is not None
    assert order.status == OrderState.PAID


def test_amazon_unavailable_is_pending_never_a_failure(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    shop.amazon.control("faults", {"operation": "CreateCharge", "status": 503, "count": 3})

    assert pay(shop, ref, wallet).kind is OutcomeKind.PENDING
    assert shop.charges.settle(ref).kind is OutcomeKind.SUCCESS  # type: ignore[union-attr]
    assert [e["status"] for e in shop.amazon.calls("CreateCharge")] == [503, 503, 503, 201]


def test_a_pending_authorization_is_settled_by_get_charge(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, "Authorized", pending=True)

    first = pay(shop, ref, wallet)

    assert (first.kind, first.reason) == (OutcomeKind.PENDING, "authorization-pending")
    claim = shop.store.ledger.get(charge_key(ref, 1))
    assert claim is not None
    assert claim.charge_id
    still = shop.charges.settle(ref)
    assert still is not None
    assert still.kind is OutcomeKind.PENDING
    shop.amazon.control("clock", {"advance_seconds": 31})
    settled = shop.charges.settle(ref)
    assert settled is not None
    assert settled.kind is OutcomeKind.SUCCESS
    assert shop.amazon.operations() == ["CreateCharge", "GetCharge", "GetCharge"]
    assert shop.store.orders.get(ref) is not None


def test_a_pending_authorization_declined_later_is_a_failure(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    script(shop, wallet, "HardDeclined", pending=True)
    assert pay(shop, ref, wallet).kind is OutcomeKind.PENDING
    shop.amazon.control("clock", {"advance_seconds": 31})
    settled = shop.charges.settle(ref)
    assert settled is not None
    assert (settled.kind, settled.buyer_must_act) == (OutcomeKind.FAILURE, True)
    pending = shop.store.checkouts.get(ref)
    assert pending is not None
    assert pending.state == PendingState.OPEN


def test_a_crashed_charge_is_taken_over_and_replays_the_same_request(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    order = ChargeOrder(
        reference=ref,
        buyer_id=BUYER,
        charge_permission_id=wallet,
        amount=Price.of("12.50", "USD"),
        initiator=ChargeInitiator.CITU,
        items=[{"name": "Mug", "quantity": 1}],
    )
    intent = charge_intent(order, 1)

    def worker_dies_after_amazon_charged() -> None:
        with shop.operations.turn(intent) as turn:
            assert turn.kind is TurnKind.HELD
            shop.client.create_charge(
                wallet,
                order.amount,
                capture_now=True,
                can_handle_pending_authorization=True,
                charge_initiator=ChargeInitiator.CITU,
                channel=order.channel,
                merchant_reference_id=ref,
                idempotency_key=intent.idempotency_key,
            )
            raise RuntimeError("worker killed before recording the answer")

    with pytest.raises(RuntimeError):
        worker_dies_after_amazon_charged()
    shop.clock.advance(21)  # the dead worker's lease runs out

    result = pay(shop, ref, wallet)

    assert result.kind is OutcomeKind.SUCCESS
    calls = shop.amazon.calls("CreateCharge")
    assert [e["fault"] for e in calls] == [None, "replay"]
    assert {e["idempotency_key"] for e in calls} == {intent.idempotency_key}
    claim = shop.store.ledger.get(charge_key(ref, 1))
    assert claim is not None
    assert claim.attempts == 2


# -- one payment per cart, whichever way ----------------------------------------------------


def one_time_session(shop: Shop, ref: str) -> str:
    """The same cart offered through the Amazon Pay button in another tab: a session the buyer
    approved at Amazon (card 1111), not completed yet."""
    session = shop.client.create_checkout_session(
        {
            "storeId": SIMULATOR_STORE_ID,
            "webCheckoutDetails": {
                "checkoutResultReturnUrl": f"https://shop.example/checkout/return?ref={ref}",
                "checkoutMode": "ProcessOrder",
            },
            "paymentDetails": {
                "paymentIntent": "AuthorizeWithCapture",
                "chargeAmount": {"amount": "12.50", "currencyCode": "USD"},
            },
            "merchantMetadata": {"merchantReferenceId": ref},
        },
        idempotency_key=uuid.uuid4().hex,
    )
    sid = session.checkout_session_id
    shop.amazon.control(f"sessions/{sid}/outcome", {"outcome": "success"})
    return sid


def returns(shop: Shop) -> ReturnHandler:
    return ReturnHandler(
        shop.client, shop.store, clock=shop.clock, sleep=time.sleep, wait=timedelta(seconds=2)
    )


def test_a_return_after_a_saved_wallet_charge_completes_nothing(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    sid = one_time_session(shop, ref)
    shop.amazon.forget_calls()

    assert pay(shop, ref, wallet).kind is OutcomeKind.SUCCESS
    outcome = returns(shop).handle_return([sid], [ref])

    assert outcome.kind is OutcomeKind.SUCCESS  # paid: never a failure, never paid twice
    assert shop.amazon.operations() == ["CreateCharge"]  # no Complete, not even a Get


def test_a_saved_wallet_submit_after_a_completed_return_charges_nothing(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    sid = one_time_session(shop, ref)
    assert returns(shop).handle_return([sid], [ref]).kind is OutcomeKind.SUCCESS
    shop.amazon.forget_calls()

    outcome = pay(shop, ref, wallet)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.SUCCESS, "already-completed")
    assert shop.amazon.log() == []
    order = shop.store.orders.get(ref)
    assert order is not None
    assert order.source == OrderSource.CHECKOUT


def test_eight_simultaneous_submits_charge_once_and_agree(shop: Shop) -> None:
    wallet = save_wallet(shop)
    ref = cart(shop)
    shop.amazon.control(
        "faults", {"operation": "CreateCharge", "kind": "delay", "delay_ms": 500, "count": 1}
    )
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def submit() -> None:
        barrier.wait()
        results.append(pay(shop, ref, wallet))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [r.kind for r in results] == [OutcomeKind.SUCCESS] * 8
    assert len(shop.amazon.calls("CreateCharge")) == 1
