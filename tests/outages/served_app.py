"""The app as gunicorn serves it in these tests: `create_app` with the claim settings of issue 8
(a 20 s lease kept alive by its holder, 2 s of waiting on a young claim) and the outage pages.

Until app.py sets those defaults and registers the pages itself, this is where they are wired;
registering again once it does is harmless.
"""

from __future__ import annotations

from flask import Flask

from app import create_app
from storefront.outages import register_outage_pages

CLAIM_SETTINGS = {"CHECKOUT_CLAIM_LEASE_SECONDS": 20.0, "CHECKOUT_CLAIM_WAIT_SECONDS": 2.0}


def create() -> Flask:
    app = create_app(CLAIM_SETTINGS)
    register_outage_pages(app)
    return app
