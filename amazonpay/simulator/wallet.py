"""The stand-in for Amazon's "update your payment method" page of a saved wallet
(`https://payments.amazon.com/jr/your-account/ba/<chargePermissionId>`, docs/amazon-pay-api.md
section 6): shows the wallet and lets the buyer fix its card with one form button."""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, redirect, render_template, request

from amazonpay.simulator.pages import error_page, log_entry
from amazonpay.simulator.state import SimulatorError

if TYPE_CHECKING:
    from amazonpay.simulator.app import Simulator

WALLET_PATH = "/jr/your-account/ba/<permission_id>"
CSRF_COOKIE = "amazon_pay_simulator_csrf"
CSRF_FIELD = "csrf_token"


def _csrf_token() -> str:
    """The buyer's double-submit token: the cookie's value, or a new one."""
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if len(token) >= 32 else secrets.token_urlsafe(32)


def _csrf_ok() -> bool:
    # A cross-site form never carries the SameSite=Strict cookie, and a foreign page cannot
    # read the token out of ours; browsers also say so in Sec-Fetch-Site.
    if request.headers.get("Sec-Fetch-Site", "same-origin") == "cross-site":
        return False
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def register_wallet_page(app: Flask, sim: Simulator) -> None:
    """GET shows the wallet; POST (same URL) fixes the card and redirects back (303)."""

    @app.get(WALLET_PATH)
    def wallet_page(permission_id: str) -> Any:
        permission = sim.transact(lambda store: store.permissions.for_buyer(permission_id))
        if permission is None:
            return error_page(404, "Unknown payment authorization", "It does not exist.")
        token = _csrf_token()
        page = render_template(
            "wallet.html",
            permission=permission,
            csrf_token=token,
            updated=request.args.get("updated") == "1",
            merchant_id=sim.merchant_id,
        )
        response = Response(page, mimetype="text/html")
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path=f"{request.script_root}/jr/",
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
        )
        # The only form here posts to this page itself.
        response.headers["content-security-policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
            "form-action 'self'"
        )
        return response

    @app.post(WALLET_PATH)
    def wallet_fix(permission_id: str) -> Any:
        if not _csrf_ok():
            return error_page(
                403, "Request refused", "Open the page again and use its button to update."
            )
        try:
            sim.transact(
                lambda store: store.permissions.buyer_action(permission_id, "fix_card"),
                base_url=request.host_url.rstrip("/"),
            )
        except SimulatorError as error:
            return error_page(error.status, "Update not possible", error.message)
        entry = log_entry("BuyerUpdatedPaymentMethod", request.path, 303, None)
        entry["charge_permission_id"] = permission_id
        sim.record(entry)
        return redirect(f"{request.script_root}{request.path}?updated=1", code=303)
