"""One-time checkout, the Amazon Pay return URL and the result page."""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from storefront.button import button_config
from storefront.catalog import CURRENCY, cart_lines, cart_snapshot, cart_total
from storefront.checkout import OutcomeKind, valid_reference
from storefront.states import CheckoutKind, PendingState
from storefront.views.wallet import NOTICE as WALLET_NOTICE
from storefront.web import buyer_id, leave_notice, shop, take_notice

bp = Blueprint("checkout", __name__)

PAYMENT_FAILED = "Your Amazon Pay payment was not successful. Please try again."
NOTICE = "payment-failed"


@bp.get("/checkout")
def checkout() -> str:
    services = shop()
    raw_cart = session.get("cart")
    lines = cart_lines(raw_cart if isinstance(raw_cart, dict) else {})
    total = cart_total(lines)
    config = None
    if lines:
        pending = services.store.checkouts.find_or_create(
            buyer_id=buyer_id(),
            kind=CheckoutKind.ONE_TIME,
            amount=total,
            currency=CURRENCY,
            items=cart_snapshot(lines),
            now=services.now(),
            reuse_window=services.pending_reuse_window,
        )
        return_url = url_for("checkout.checkout_return", ref=pending.reference, _external=True)
        config = button_config(services.client, services.button, pending, return_url)
    return render_template(
        "checkout.html",
        lines=lines,
        total=total,
        currency=CURRENCY,
        button_config=config,
        checkout_js_url=services.checkout_js_url,
        error=PAYMENT_FAILED if take_notice(NOTICE) else None,
    )


@bp.get("/checkout/return")
def checkout_return() -> BaseResponse | tuple[str, int]:
    outcome = shop().returns.handle_return(
        request.args.getlist("amazonCheckoutSessionId"), request.args.getlist("ref")
    )
    g.return_outcome = outcome  # for the metrics hook (storefront/metrics.py)
    if outcome.kind is OutcomeKind.SUCCESS and outcome.reference:
        return redirect(url_for("checkout.result", reference=outcome.reference), 303)
    if outcome.kind is OutcomeKind.PENDING:
        return render_template("pending.html", kind=outcome.checkout_kind), 200
    # Back to the start of checkout (seed, step 3), with the notice in the session cookie.
    if outcome.checkout_kind == CheckoutKind.ONE_TIME:
        leave_notice(NOTICE)
        return redirect(url_for("checkout.checkout"), 303)
    leave_notice(WALLET_NOTICE)
    return redirect(url_for("wallet.wallet"), 303)


@bp.get("/checkout/result/<reference>")
def result(reference: str) -> str:
    if not valid_reference(reference):
        abort(404)
    store = shop().store
    pending = store.checkouts.get(reference)
    if pending is None or pending.state != PendingState.COMPLETED:
        abort(404)
    claim = store.ledger.completed_for(reference)
    order = store.orders.get(reference) if pending.kind == CheckoutKind.ONE_TIME else None
    if pending.kind == CheckoutKind.ONE_TIME and pending.buyer_id == session.get("buyer"):
        session.pop("cart", None)  # paid: start a fresh cart
    return render_template(
        "result.html",
        wallet=pending.kind == CheckoutKind.WALLET_SETUP,
        pending=pending,
        order=order,
        charge_permission_id=claim.charge_permission_id if claim else None,
        charge_id=claim.charge_id if claim else None,
    )
