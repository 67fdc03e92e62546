"""The buyer's side (docs/amazon-pay-api.md sections 3 and 11): checkout.js, the button's form
target that verifies the static signature, and the hosted page where the buyer picks a card."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from flask import Flask, Response, render_template, request

from amazonpay import signing
from amazonpay.simulator.auth import key_environment
from amazonpay.simulator.state import LIVE, PAYMENT_METHODS, SANDBOX, JSONObject, SimulatorError

if TYPE_CHECKING:
    from amazonpay.simulator.app import Simulator

_HERE = Path(__file__).parent


def append_session_id(url: str, session_id: str) -> str:
    """Add `amazonCheckoutSessionId` with `?` or `&`, keeping the query, dropping a fragment."""
    parts = urlsplit(url)
    parameter = f"amazonCheckoutSessionId={quote(session_id, safe='')}"
    query = f"{parts.query}&{parameter}" if parts.query else parameter
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _return_url(session: JSONObject) -> str | None:
    """Where the buyer goes back to the shop, with the session id appended (section 12)."""
    web = session["webCheckoutDetails"]
    target = web.get("checkoutResultReturnUrl") or web.get("checkoutReviewReturnUrl")
    return append_session_id(target, session["checkoutSessionId"]) if target else None


def log_entry(operation: str, path: str, status: int, session_id: str | None) -> JSONObject:
    """A request-log entry for a page (README.md, `GET /_simulator/requests`)."""
    return {
        "operation": operation,
        "method": "POST",
        "path": path,
        "checkout_session_id": session_id,
        "idempotency_key": None,
        "status": status,
        "fault": None,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message), status


def register_pages(app: Flask, sim: Simulator) -> None:
    """checkout.js, the button's form target and the hosted buyer page (section 3, 11)."""
    script = (_HERE / "static" / "checkout.js").read_text(encoding="utf-8")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("x-amz-pay-request-id", str(uuid.uuid4()))
        if response.mimetype == "text/html":
            # No form-action: the buyer's choice redirects to the shop's return URL.
            response.headers.setdefault(
                "content-security-policy",
                "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'",
            )
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)  # keeps browsers' automatic favicon request quiet

    @app.get("/checkout.js")
    def checkout_js() -> Response:
        # The pages' root as the browser sees it (behind the shop's proxy: its host and prefix).
        base = request.url_root.rstrip("/")
        body = script.replace("__SIMULATOR_BASE__", json.dumps(base)[1:-1])
        response = Response(body, mimetype="application/javascript")
        response.headers["cache-control"] = "no-cache"
        return response

    @app.post("/checkout/start")
    def button_checkout() -> Any:
        # The button's top-level form POST: verify the static signature over the exact
        # payloadJSON (section 3) and create the session from it.
        entry = log_entry("ButtonCheckout", request.path, 400, None)
        try:
            return _start_checkout(app, sim, entry)
        finally:
            sim.record(entry)

    @app.get("/hosted/<session_id>")
    def hosted_page(session_id: str) -> Any:
        session = sim.transact(lambda store: store.sessions.for_buyer(session_id))
        if session is None:
            return error_page(404, "Unknown checkout", "This checkout does not exist.")
        return render_template(
            "hosted.html",
            session=session,
            methods=PAYMENT_METHODS,
            merchant_id=sim.merchant_id,
            return_url=_return_url(session),
        )

    @app.post("/hosted/<session_id>/choose")
    def hosted_choose(session_id: str) -> Any:
        choice = request.form.get("method", "")
        outcome = "BuyerCanceled" if choice == "cancel" else PAYMENT_METHODS.get(choice)
        if outcome is None:
            return error_page(400, "Unknown payment method", "Choose one of the listed methods.")
        try:
            session = sim.set_buyer_outcome(session_id, outcome)
        except SimulatorError as error:
            return error_page(error.status, "Checkout not possible", error.message)
        entry = log_entry("BuyerChoice", request.path, 303, session_id)
        entry["outcome"] = outcome
        sim.record(entry)
        target = _return_url(session)
        if target is None:
            return error_page(200, "Done", "The checkout has no return URL to go back to.")
        return app.redirect(target, code=303)


def _start_checkout(app: Flask, sim: Simulator, entry: JSONObject) -> Any:
    form = request.form
    payload_json = form.get("payloadJSON", "")
    signature = form.get("signature", "")
    key_id = form.get("publicKeyId", "")
    algorithm_name = form.get("algorithm") or signing.Algorithm.PSS.value
    try:
        algorithm = signing.Algorithm.parse(algorithm_name)
    except ValueError:
        return error_page(400, "Unknown algorithm", f"{algorithm_name} is not supported.")
    public_key = sim.public_keys.get(key_id)
    if public_key is None:
        return error_page(400, "Unknown public key", "The publicKeyId is not registered.")
    if not signing.verify_button_signature(public_key, payload_json, signature, algorithm):
        return error_page(
            400,
            "Invalid button signature",
            "The signature does not match payloadJSON. No Checkout Session was created.",
        )
    try:
        payload = json.loads(payload_json)
    except ValueError:
        return error_page(400, "Invalid payload", "payloadJSON is not valid JSON.")
    web = payload.get("webCheckoutDetails") if isinstance(payload, dict) else None
    if not isinstance(web, dict) or not web.get("checkoutResultReturnUrl"):
        return error_page(
            400, "Invalid payload", "webCheckoutDetails.checkoutResultReturnUrl is required."
        )
    if web.get("checkoutMode") != "ProcessOrder":
        return error_page(
            400, "Invalid payload", 'webCheckoutDetails.checkoutMode must be "ProcessOrder".'
        )
    env = key_environment(key_id) or (
        SANDBOX if form.get("sandbox", "true").lower() != "false" else LIVE
    )
    base_url = request.url_root.rstrip("/")
    try:
        session = sim.transact(
            lambda store: store.sessions.create(env, payload, hosted_base_url=base_url)
        )
    except SimulatorError as error:
        return error_page(400, "Invalid payload", error.message)
    entry["checkout_session_id"] = session["checkoutSessionId"]
    entry["status"] = 303
    return app.redirect(f"{request.script_root}/hosted/{session['checkoutSessionId']}", code=303)
