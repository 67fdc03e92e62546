"""Saved payment methods: the button that saves Amazon Pay as one (Saved Wallet setup), their
states, and removing one. Also builds the saved-wallet use cases once per app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as BaseResponse

from storefront.button import PaymentIntent, button_config
from storefront.catalog import CURRENCY
from storefront.notifications import NotificationRouter
from storefront.saved_wallet import SavedWalletCharges
from storefront.states import CheckoutKind
from storefront.wallet_removal import RemovalKind, WalletRemoval
from storefront.wallet_state import WalletStates, update_page_base, update_page_url
from storefront.web import Shop, buyer_id, leave_notice, shop, take_notice

bp = Blueprint("wallet", __name__)

WALLET_FAILED = (
    "Your request to save Amazon Pay as a payment method was not successful. Please try again."
)
NOTICE = "wallet-failed"
REMOVED = "Amazon Pay was removed from your payment methods."
REMOVED_NOTICE = "wallet-removed"
REMOVE_PENDING = (
    "We are still waiting for Amazon Pay to confirm the removal. It will be finished shortly."
)
REMOVE_PENDING_NOTICE = "wallet-remove-pending"
REMOVE_REFUSED = "That payment method could not be removed."
REMOVE_REFUSED_NOTICE = "wallet-remove-refused"


@dataclass(frozen=True)
class WalletServices:
    """The saved-wallet use cases of one app, sharing the shop's client, store and ledger."""

    states: WalletStates
    charges: SavedWalletCharges
    removal: WalletRemoval
    router: NotificationRouter
    update_base: str  # where the buyer fixes a payment method (Amazon, or the simulator)

    def update_url(self, charge_permission_id: str) -> str:
        return update_page_url(self.update_base, charge_permission_id)


def _build(services: Shop, intent: PaymentIntent) -> WalletServices:
    clock = services.returns.clock
    states = WalletStates(services.client, services.store, clock=clock)
    charges = SavedWalletCharges(
        services.client,
        services.store,
        services.operations,
        states,
        clock=clock,
        # AMAZON_PAY_PAYMENT_INTENT also decides the saved-wallet charge's captureNow (contract).
        capture_now=intent.capture_now,
    )
    return WalletServices(
        states=states,
        charges=charges,
        removal=WalletRemoval(services.client, services.store, services.operations, clock=clock),
        router=NotificationRouter(returns=services.returns, charges=charges, wallets=states),
        update_base=update_page_base(services.checkout_js_url),
    )


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    """Built when the blueprint is registered, after `create_app` made the Shop."""
    app = state.app
    app.extensions["saved_wallet"] = _build(app.extensions["shop"], app.config["PAYMENT_INTENT"])


def wallet_services(app: Flask | None = None) -> WalletServices:
    """This app's saved-wallet use cases (`app`: outside a request, e.g. to register an IPN
    handler with `wallet_services(app).router.on(REFUND, handler)`)."""
    found: WalletServices = (app or current_app).extensions["saved_wallet"]
    return found


@bp.get("/wallet")
def wallet() -> str:
    services = shop()
    buyer = buyer_id()
    pending = services.store.checkouts.find_or_create(
        buyer_id=buyer,
        kind=CheckoutKind.WALLET_SETUP,
        amount=None,
        currency=CURRENCY,
        items=[],
        now=services.now(),
        reuse_window=services.pending_reuse_window,
    )
    return_url = url_for("checkout.checkout_return", ref=pending.reference, _external=True)
    saved = wallet_services()
    info = None
    if take_notice(REMOVED_NOTICE):
        info = REMOVED
    elif take_notice(REMOVE_PENDING_NOTICE):
        info = REMOVE_PENDING
    error = None
    if take_notice(NOTICE):
        error = WALLET_FAILED
    elif take_notice(REMOVE_REFUSED_NOTICE):
        error = REMOVE_REFUSED
    return render_template(
        "wallet.html",
        methods=saved.states.for_page(buyer),
        update_url=saved.update_url,
        button_config=button_config(services.client, services.button, pending, return_url),
        checkout_js_url=services.checkout_js_url,
        error=error,
        info=info,
    )


@bp.post("/wallet/remove")
def remove() -> BaseResponse:
    outcome = wallet_services().removal.remove(
        buyer_id(), request.form.getlist("charge_permission_id")
    )
    if outcome.kind is RemovalKind.REMOVED:
        leave_notice(REMOVED_NOTICE)
    elif outcome.kind is RemovalKind.PENDING:
        leave_notice(REMOVE_PENDING_NOTICE)
    else:
        leave_notice(REMOVE_REFUSED_NOTICE)
    return redirect(url_for("wallet.wallet"), 303)
