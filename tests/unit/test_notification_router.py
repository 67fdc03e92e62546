"""Routing IPNs by object type, on SQLite and a real PostgreSQL against the simulator over HTTP:
a CHARGE_PERMISSION message refreshes that wallet from Get Charge Permission, a CHARGE message
settles the saved-wallet charge waiting on it through Get Charge, a REFUND message goes to the
registered handlers, and any other type is logged and ignored. The message's body decides
nothing: only what Amazon answers is recorded (docs/amazon-pay-api.md 10)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from amazonpay.notifications import IpnMessage
from storefront.checkout import OutcomeKind, ReturnHandler
from storefront.notifications import CHARGE, CHARGE_PERMISSION, REFUND, NotificationRouter
from storefront.states import ClaimState, OperationKind, PendingState, WalletState
from tests.unit.test_saved_wallet import Shop, amazon, cart, save_wallet, shop

__all__ = ["amazon", "shop"]  # fixtures: the simulator and the shop (the store: conftest)


@pytest.fixture
def router(shop: Shop) -> NotificationRouter:
    returns = ReturnHandler(shop.client, shop.store, clock=shop.clock, sleep=time.sleep)
    return NotificationRouter(returns=returns, charges=shop.charges, wallets=shop.states)


def message(
    object_type: str, object_id: str, charge_permission_id: str, **extra: Any
) -> IpnMessage:
    """An Amazon Pay IPN message as the simulator sends it (section 10), after verification."""
    return IpnMessage.from_json(
        {
            "MerchantID": "SIMULATORMERCHANT",
            "ObjectType": object_type,
            "ObjectId": object_id,
            "ChargePermissionId": charge_permission_id,
            "NotificationType": "STATE_CHANGE",
            "NotificationId": "n-1",
            "NotificationVersion": "V2",
            **extra,
        }
    )


def waiting_charge(shop: Shop, permission_id: str) -> tuple[str, str]:
    """A saved-wallet charge whose authorization is pending at Amazon: (reference, charge id)."""
    shop.amazon.control(
        f"charge-permissions/{permission_id}/next-charges",
        {"outcome": "Authorized", "count": 1, "pending": True},
    )
    reference = cart(shop)
    outcome = shop.charges.pay(shop_buyer(shop, reference), [reference], [permission_id])
    assert (outcome.kind, outcome.reason) == (OutcomeKind.PENDING, "authorization-pending")
    [claim] = shop.store.ledger.for_reference(reference)
    assert claim.charge_id
    shop.amazon.forget_calls()
    return reference, claim.charge_id


def shop_buyer(shop: Shop, reference: str) -> str:
    pending = shop.store.checkouts.get(reference)
    assert pending is not None
    return pending.buyer_id


def test_a_charge_permission_message_refreshes_that_wallet_from_amazon(
    shop: Shop, router: NotificationRouter
) -> None:
    permission_id = save_wallet(shop)
    shop.amazon.control(f"charge-permissions/{permission_id}/buyer", {"action": "expire_card"})

    report = router.route(message(CHARGE_PERMISSION, permission_id, permission_id))

    assert report.wallet_refreshed
    assert shop.amazon.operations() == ["GetChargePermission"]
    wallet = shop.store.wallets.get(permission_id)
    assert wallet is not None
    assert (wallet.state, wallet.reason_code) == (
        WalletState.NON_CHARGEABLE,
        "PaymentMethodExpired",
    )
    assert wallet.payment_descriptor == "Visa ****1111"
    # The buyer fixes the card at Amazon; the next message brings the wallet back.
    shop.amazon.control(f"charge-permissions/{permission_id}/buyer", {"action": "fix_card"})
    router.route(message(CHARGE_PERMISSION, permission_id, permission_id))
    fixed = shop.store.wallets.get(permission_id)
    assert fixed is not None
    assert fixed.state == WalletState.CHARGEABLE


def test_the_message_body_decides_nothing_only_amazons_answer_does(
    shop: Shop, router: NotificationRouter
) -> None:
    permission_id = save_wallet(shop)
    # A message that claims the wallet closed (fields of a body, however they are spelled)...
    claimed = message(
        CHARGE_PERMISSION,
        permission_id,
        permission_id,
        State="Closed",
        StatusDetails={"state": "Closed", "reasonCode": "BuyerClosed"},
    )

    report = router.route(claimed)

    # ...changes nothing: Amazon says Chargeable, and that is what is stored.
    assert report.wallet_refreshed
    assert shop.amazon.operations() == ["GetChargePermission"]
    wallet = shop.store.wallets.get(permission_id)
    assert wallet is not None
    assert wallet.state == WalletState.CHARGEABLE


def test_a_message_about_a_wallet_we_do_not_keep_reads_nothing_from_amazon(
    shop: Shop, router: NotificationRouter
) -> None:
    save_wallet(shop)
    stranger = "S01-0000000-0000000"

    report = router.route(message(CHARGE_PERMISSION, stranger, stranger))

    assert not report.wallet_refreshed
    assert shop.amazon.operations() == []
    assert shop.store.wallets.get(stranger) is None


def test_a_charge_message_settles_the_waiting_charge_through_get_charge(
    shop: Shop, router: NotificationRouter
) -> None:
    permission_id = save_wallet(shop)
    reference, charge_id = waiting_charge(shop, permission_id)
    shop.amazon.control(f"charges/{charge_id}/outcome", {"outcome": "Authorized"})
    shop.amazon.forget_calls()

    report = router.route(message(CHARGE, charge_id, permission_id))

    assert [(r.reference, r.kind) for r in report.charges.results] == [
        (reference, OutcomeKind.SUCCESS)
    ]
    calls = shop.amazon.operations()
    assert "GetCharge" in calls
    assert "CreateCharge" not in calls  # settled by reading the charge, nothing charged again
    [claim] = shop.store.ledger.for_reference(reference)
    assert (claim.kind, claim.status, claim.charge_id) == (
        OperationKind.CREATE_CHARGE,
        ClaimState.COMPLETED,
        charge_id,
    )
    order = shop.store.orders.get(reference)
    assert order is not None
    assert order.charge_id == charge_id
    pending = shop.store.checkouts.get(reference)
    assert pending is not None
    assert pending.state == PendingState.COMPLETED
    # The same message again (SNS delivers at least once) settles nothing more.
    again = router.route(message(CHARGE, charge_id, permission_id))
    assert again.charges.results == ()


def test_a_charge_message_while_amazon_still_authorizes_leaves_it_pending(
    shop: Shop, router: NotificationRouter
) -> None:
    permission_id = save_wallet(shop)
    reference, charge_id = waiting_charge(shop, permission_id)

    report = router.route(message(CHARGE, charge_id, permission_id, State="Authorized"))

    assert [(r.reference, r.kind) for r in report.charges.results] == [
        (reference, OutcomeKind.PENDING)
    ]
    assert "CreateCharge" not in shop.amazon.operations()
    assert shop.store.orders.get(reference) is None
    [claim] = shop.store.ledger.for_reference(reference)
    assert claim.status == ClaimState.PENDING


def test_a_refund_message_goes_to_the_registered_handlers_only(
    shop: Shop, router: NotificationRouter
) -> None:
    permission_id = save_wallet(shop)
    refunds: list[IpnMessage] = []
    charges: list[IpnMessage] = []
    router.on(REFUND, refunds.append)
    router.on(CHARGE, charges.append)
    refund = message(REFUND, f"{permission_id}-R000001", permission_id)

    report = router.route(refund)

    assert refunds == [refund]
    assert charges == []
    assert report.handled_by == 1
    assert not report.wallet_refreshed
    assert report.charges.results == ()
    assert shop.amazon.operations() == []  # the handler decides what to read; we read nothing


@pytest.mark.parametrize("object_type", ["CHARGEBACK", "SOMETHING_NEW", ""])
def test_a_message_of_another_type_is_logged_and_ignored(
    shop: Shop,
    router: NotificationRouter,
    caplog: pytest.LogCaptureFixture,
    object_type: str,
) -> None:
    permission_id = save_wallet(shop)
    reference, charge_id = waiting_charge(shop, permission_id)
    shop.amazon.control(f"charges/{charge_id}/outcome", {"outcome": "Authorized"})
    shop.amazon.forget_calls()
    refunds: list[IpnMessage] = []
    router.on(REFUND, refunds.append)

    with caplog.at_level(logging.INFO, logger="storefront.notifications"):
        report = router.route(message(object_type, charge_id, permission_id))

    assert report.summary() == "nothing to settle"
    assert refunds == []
    assert shop.amazon.operations() == []
    assert "no use case for its object type" in caplog.text
    [claim] = shop.store.ledger.for_reference(reference)
    assert claim.status == ClaimState.PENDING  # left for cron or the right message
