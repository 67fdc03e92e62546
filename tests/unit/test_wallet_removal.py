"""Removing a saved wallet, the use case without Flask, against the simulator over HTTP, on SQLite
and a real PostgreSQL: only the owner's, one Close Charge Permission however often it is asked
for, an already closed wallet removed without error, a lost answer pending then reconciled, and
nothing sent to Amazon for another buyer's or a malformed id (docs/contract.md "Using a saved
wallet"; docs/amazon-pay-api.md 5.1 and 6)."""

from __future__ import annotations

import threading

import pytest

from storefront.db import Claim
from storefront.states import ClaimState, WalletState
from storefront.wallet_removal import (
    CLOSURE_REASON,
    RemovalKind,
    RemovalOutcome,
    WalletRemoval,
    close_key,
)
from tests.unit.test_saved_wallet import BUYER, OTHER, Shop, amazon, cart, save_wallet, shop

__all__ = ["amazon", "shop"]  # fixtures: the simulator and the shop (the store: conftest)


@pytest.fixture
def removal(shop: Shop) -> WalletRemoval:
    return WalletRemoval(shop.client, shop.store, shop.operations, clock=shop.clock)


def state_of(shop: Shop, permission_id: str) -> WalletState:
    wallet = shop.store.wallets.get(permission_id)
    assert wallet is not None
    return wallet.state


def close_claim(shop: Shop, permission_id: str) -> Claim:
    claim = shop.store.ledger.get(close_key(permission_id))
    assert claim is not None
    return claim


def test_the_owner_removes_a_wallet_with_one_close_and_pending_charges_are_kept(
    shop: Shop, removal: WalletRemoval
) -> None:
    permission_id = save_wallet(shop)
    # A charge still authorizing on this wallet: removing the wallet must not cancel it.
    shop.amazon.control(
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": "Authorized", "count": 1, "pending": True},
    )
    reference = cart(shop)
    shop.charges.pay(BUYER, [reference], [permission_id])
    [charge_claim] = shop.store.ledger.for_reference(reference)
    assert charge_claim.charge_id
    shop.amazon.forget_calls()

    outcome = removal.remove(BUYER, [permission_id])

    assert outcome == RemovalOutcome(RemovalKind.REMOVED, permission_id, "closed")
    assert shop.amazon.operations() == ["CloseChargePermission"]
    at_amazon = shop.client.get_charge_permission(permission_id)
    assert at_amazon.state_raw == "Closed"
    [reason] = at_amazon.reasons
    assert (reason.reason_code, reason.reason_description) == ("MerchantClosed", CLOSURE_REASON)
    # cancelPendingCharges: false - the buyer's order in flight still goes through.
    assert shop.client.get_charge(charge_claim.charge_id).state_raw == "AuthorizationInitiated"
    wallet = shop.store.wallets.get(permission_id)
    assert wallet is not None
    assert (wallet.state, wallet.reason_code) == (WalletState.CLOSED, "MerchantClosed")
    assert close_claim(shop, permission_id).status == ClaimState.COMPLETED


def test_removing_twice_or_at_once_sends_one_close(shop: Shop, removal: WalletRemoval) -> None:
    permission_id = save_wallet(shop)
    outcomes: list[RemovalOutcome] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def click() -> None:
        start.wait()
        outcome = removal.remove(BUYER, [permission_id])
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {o.kind for o in outcomes} == {RemovalKind.REMOVED}
    assert shop.amazon.operations() == ["CloseChargePermission"]
    # Later clicks (a refresh, a second tab): removed again, nothing more sent.
    assert removal.remove(BUYER, [permission_id]).kind is RemovalKind.REMOVED
    assert removal.close(permission_id) == RemovalOutcome(
        RemovalKind.REMOVED, permission_id, "already-decided"
    )
    assert shop.amazon.operations() == ["CloseChargePermission"]


def test_a_wallet_we_know_is_closed_is_removed_without_calling_amazon(
    shop: Shop, removal: WalletRemoval
) -> None:
    permission_id = save_wallet(shop)
    shop.amazon.control(f"charge-permissions/{permission_id}/buyer", {"action": "close"})
    shop.states.refresh(permission_id)  # the IPN told us: BuyerClosed
    shop.amazon.forget_calls()

    outcome = removal.remove(BUYER, [permission_id])

    assert outcome == RemovalOutcome(RemovalKind.REMOVED, permission_id, "already-closed")
    assert shop.amazon.operations() == []


def test_a_wallet_the_buyer_closed_at_amazon_is_removed_without_error(
    shop: Shop, removal: WalletRemoval
) -> None:
    permission_id = save_wallet(shop)
    # Closed at Amazon, and we have not heard yet: our table still says chargeable.
    shop.amazon.control(f"charge-permissions/{permission_id}/buyer", {"action": "close"})
    assert state_of(shop, permission_id) == WalletState.CHARGEABLE

    outcome = removal.remove(BUYER, [permission_id])

    assert outcome.kind is RemovalKind.REMOVED
    assert shop.amazon.operations() == ["CloseChargePermission"]
    wallet = shop.store.wallets.get(permission_id)
    assert wallet is not None
    assert (wallet.state, wallet.reason_code) == (WalletState.CLOSED, "BuyerClosed")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 503}, id="503"),
        pytest.param({"kind": "drop"}, id="closed-but-no-answer"),
    ],
)
def test_a_lost_answer_is_pending_then_reconciled(
    shop: Shop, removal: WalletRemoval, fault: dict[str, object]
) -> None:
    permission_id = save_wallet(shop)
    # Every try of the client's retries fails: the buyer's request ends without an answer.
    shop.amazon.control("faults", {"operation": "CloseChargePermission", "count": 3, **fault})

    outcome = removal.remove(BUYER, [permission_id])

    assert outcome == RemovalOutcome(RemovalKind.PENDING, permission_id, "close-unknown")
    assert close_claim(shop, permission_id).status == ClaimState.PENDING
    assert state_of(shop, permission_id) == WalletState.CHARGEABLE  # not until Amazon says so
    shop.amazon.forget_calls()

    settled = removal.reconcile()

    assert settled == [RemovalOutcome(RemovalKind.REMOVED, permission_id, "closed")]
    assert shop.amazon.operations() == ["CloseChargePermission"]
    assert shop.client.get_charge_permission(permission_id).state_raw == "Closed"
    assert state_of(shop, permission_id) == WalletState.CLOSED
    assert close_claim(shop, permission_id).status == ClaimState.COMPLETED
    assert removal.reconcile() == []  # nothing left to settle


def test_another_buyers_wallet_is_refused_and_nothing_is_sent(
    shop: Shop, removal: WalletRemoval
) -> None:
    theirs = save_wallet(shop, OTHER)

    outcome = removal.remove(BUYER, [theirs])

    assert outcome == RemovalOutcome(RemovalKind.REFUSED, None, "foreign-charge-permission")
    assert shop.amazon.operations() == []
    assert shop.store.ledger.get(close_key(theirs)) is None
    assert state_of(shop, theirs) == WalletState.CHARGEABLE
    assert shop.client.get_charge_permission(theirs).state_raw == "Chargeable"


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([], id="missing"),
        pytest.param(["S01-0000000-0000000"], id="unknown"),
        pytest.param(["not-a-permission"], id="malformed"),
        pytest.param(["S01-1234567-1234567<script>"], id="injected"),
        pytest.param(["OWN", "OWN"], id="twice"),
    ],
)
def test_a_missing_unknown_or_malformed_id_is_refused_and_nothing_is_sent(
    shop: Shop, removal: WalletRemoval, values: list[str]
) -> None:
    permission_id = save_wallet(shop)
    ids = [permission_id if value == "OWN" else value for value in values]

    outcome = removal.remove(BUYER, ids)

    assert outcome.kind is RemovalKind.REFUSED
    assert shop.amazon.operations() == []
    assert state_of(shop, permission_id) == WalletState.CHARGEABLE
