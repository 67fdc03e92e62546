"""The simulator's in-memory objects and their state machines (docs/amazon-pay-api.md sections 4-6).

Objects are kept as the camelCase JSON Amazon returns, with every field of section 4 present
(null where unset); one module per Amazon object around a shared core, joined by `Store`.
"""

from amazonpay.simulator.state.core import (
    LIVE,
    SANDBOX,
    Event,
    JSONObject,
    SimulatorError,
    amz_timestamp,
    parse_price,
    price_json,
)
from amazonpay.simulator.state.sessions import OUTCOMES, PAYMENT_METHODS
from amazonpay.simulator.state.store import SIMULATION_CODES, Store

__all__ = [
    "LIVE",
    "OUTCOMES",
    "PAYMENT_METHODS",
    "SANDBOX",
    "SIMULATION_CODES",
    "Event",
    "JSONObject",
    "SimulatorError",
    "Store",
    "amz_timestamp",
    "parse_price",
    "price_json",
]
