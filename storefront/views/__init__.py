"""Blueprints: thin views that parse the request, call one use case, and render or redirect."""

from __future__ import annotations

from flask import Flask

from storefront.views import admin, checkout, notifications, shop, wallet

__all__ = ["register_blueprints"]


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(shop.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(wallet.bp)
    app.register_blueprint(notifications.bp)
    app.register_blueprint(admin.bp)
