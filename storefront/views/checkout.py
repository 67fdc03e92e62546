"""One-time checkout, paying with a saved wallet, the Amazon Pay return URL, the result page."""

from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from storefront.button import button_config
from storefront.catalog import CURRENCY, cart_lines, cart_snapshot, cart_total
from storefront.checkout import OutcomeKind, valid_reference
from storefront.saved_wallet import ChargeOutcome
from storefront.states import CheckoutKind, PendingState, WalletState
from storefront.views.wallet import NOTICE as WALLET_NOTICE
from storefront.views.wallet import wallet_services
from storefront.web import buyer_id, leave_notice, shop, take_notice

bp = Blueprint("checkout", __name__)

PAYMENT_FAILED = "Your Amazon Pay payment was not successful. Please try again."
NOTICE = "payment-failed"
# What the failure notice adds for a saved wallet: ["fix", id] (the buyer must update the
# payment method at Amazon) or ["closed", id] (save Amazon Pay again).
_HELP = "saved_wallet_help"


@bp.get("/checkout")
def checkout() -> str:
    services = shop()
    raw_cart = session.get("cart")
    lines = cart_lines(raw_cart if isinstance(raw_cart, dict) else {})
    total = cart_total(lines)
    config = None
    reference = None
    wallets = []
    saved = wallet_services()
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
        reference = pending.reference
        # A Closed wallet is never offered again (docs/contract.md "Using a saved wallet").
        wallets = [
            method
            for method in saved.states.for_page(buyer_id())
            if method.state != WalletState.CLOSED
        ]
    failed = take_notice(NOTICE)
    help_ = session.pop(_HELP, None) if failed else None
    return render_template(
        "checkout.html",
        lines=lines,
        total=total,
        currency=CURRENCY,
        button_config=config,
        checkout_js_url=services.checkout_js_url,
        reference=reference,
        wallets=wallets,
        update_url=saved.update_url,
        help=help_ if isinstance(help_, list) and len(help_) == 2 else None,
        error=PAYMENT_FAILED if failed else None,
    )


@bp.post("/checkout/saved")
def pay_saved() -> BaseResponse | tuple[str, int]:
    outcome = wallet_services().charges.pay(
        buyer_id(), request.form.getlist("ref"), request.form.getlist("charge_permission_id")
    )
    return _charge_response(outcome)


def _charge_response(outcome: ChargeOutcome) -> BaseResponse | tuple[str, int]:
    """Success -> the result page; pending -> "being confirmed" (refreshing the result page,
    which settles it); failure -> /checkout with the notice and, where it helps, the link."""
    if outcome.kind is OutcomeKind.SUCCESS and outcome.reference:
        return redirect(url_for("checkout.result", reference=outcome.reference), 303)
    if outcome.kind is OutcomeKind.PENDING:
        refresh = (
            url_for("checkout.result", reference=outcome.reference) if outcome.reference else None
        )
        return render_template("pending.html", kind="one_time", refresh_url=refresh), 200
    leave_notice(NOTICE)
    if outcome.charge_permission_id and (outcome.buyer_must_act or outcome.wallet_closed):
        kind = "fix" if outcome.buyer_must_act else "closed"
        session[_HELP] = [kind, outcome.charge_permission_id]
    else:
        session.pop(_HELP, None)
    return redirect(url_for("checkout.checkout"), 303)


@bp.get("/checkout/return")
def checkout_return() -> BaseResponse | tuple[str, int]:
    cookie_buyer = session.get("buyer")  # never made here: a stranger has none
    outcome = shop().returns.handle_return(
        request.args.getlist("amazonCheckoutSessionId"),
        request.args.getlist("ref"),
        client=request.remote_addr,
        buyer=cookie_buyer if isinstance(cookie_buyer, str) else None,
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
def result(reference: str) -> BaseResponse | tuple[str, int] | str:
    if not valid_reference(reference):
        abort(404)
    store = shop().store
    pending = store.checkouts.get(reference)
    if pending is None:
        abort(404)
    if pending.state != PendingState.COMPLETED:
        # A saved-wallet charge not known yet: this refresh settles it (replay, Get Charge).
        outcome = wallet_services().charges.settle(reference)
        if outcome is None:
            abort(404)
        if outcome.kind is not OutcomeKind.SUCCESS:
            return _charge_response(outcome)
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
