"""The offline Amazon Pay simulator: a WSGI app that answers like Amazon Pay API v2.

It verifies request signatures the way Amazon does (sharing only `amazonpay.signing` with the
client), serves a checkout.js stand-in and hosted buyer pages, and lets tests inject faults.
See README.md in this package for the control API and the page hooks.
"""

from amazonpay.simulator.app import (
    OPERATIONS,
    SIMULATOR_MERCHANT_ID,
    SIMULATOR_STORE_ID,
    Fault,
    Simulator,
    append_session_id,
)
from amazonpay.simulator.server import ServerHandle, serve_in_thread

__all__ = [
    "OPERATIONS",
    "SIMULATOR_MERCHANT_ID",
    "SIMULATOR_STORE_ID",
    "Fault",
    "ServerHandle",
    "Simulator",
    "append_session_id",
    "serve_in_thread",
]
