"""Saved payment methods and the button that saves Amazon Pay as one (Saved Wallet setup)."""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

from storefront.button import button_config
from storefront.catalog import CURRENCY
from storefront.states import CheckoutKind
from storefront.web import buyer_id, shop, take_notice

bp = Blueprint("wallet", __name__)

WALLET_FAILED = (
    "Your request to save Amazon Pay as a payment method was not successful. Please try again."
)
NOTICE = "wallet-failed"


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
    return render_template(
        "wallet.html",
        methods=services.store.wallets.for_buyer(buyer),
        button_config=button_config(services.client, services.button, pending, return_url),
        checkout_js_url=services.checkout_js_url,
        error=WALLET_FAILED if take_notice(NOTICE) else None,
    )
