"""Catalog, cart (kept in the signed session cookie) and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from storefront.catalog import MAX_QUANTITY, PRODUCTS, cart_lines, cart_total
from storefront.web import buyer_id, shop

bp = Blueprint("shop", __name__)


def _cart() -> dict[str, Any]:
    raw = session.get("cart")
    return dict(raw) if isinstance(raw, dict) else {}


UNKNOWN_PRODUCT = "That product is not in our catalog, so nothing was added to your cart."


def _index(error: str | None = None) -> str:
    lines = cart_lines(_cart())
    return render_template(
        "index.html",
        products=list(PRODUCTS.values()),
        cart_count=sum(line.quantity for line in lines),
        added=request.args.get("added") in PRODUCTS,
        error=error,
    )


@bp.get("/")
def index() -> str:
    buyer_id()
    return _index()


@bp.get("/cart")
def cart() -> str:
    lines = cart_lines(_cart())
    return render_template("cart.html", lines=lines, total=cart_total(lines))


@bp.post("/cart/add")
def cart_add() -> BaseResponse | tuple[str, int]:
    product_id = request.form.get("product_id", "")
    if product_id not in PRODUCTS:
        return _index(UNKNOWN_PRODUCT), 400  # the cart stays as it was
    cart = _cart()
    current = cart.get(product_id)
    quantity = current if isinstance(current, int) and not isinstance(current, bool) else 0
    cart[product_id] = min(max(quantity, 0) + 1, MAX_QUANTITY)
    session["cart"] = cart
    buyer_id()
    return redirect(url_for("shop.index", added=product_id), 303)


@bp.post("/cart/clear")
def cart_clear() -> BaseResponse:
    session.pop("cart", None)
    return redirect(url_for("shop.cart"), 303)


@bp.get("/healthz")
def healthz() -> tuple[BaseResponse, int]:
    services = shop()
    if not services.schema.ready():
        return jsonify(status="error", database=services.schema.line), 503
    if services.store.ping():
        return jsonify(status="ok", database="ok"), 200
    return jsonify(status="error", database="unavailable"), 503
