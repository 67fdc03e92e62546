"""Which API operation a method and path name (docs/amazon-pay-api.md section 5.1), and the
store call that answers it."""

from __future__ import annotations

import re
from typing import Any

from amazonpay.simulator.state import JSONObject, SimulatorError, Store

API_PATH = re.compile(r"^/(?:(?P<env>sandbox|live)/)?v2/(?P<resource>.*?)/?$")
_ID = r"(?P<id>[A-Za-z0-9_-]+)"

# (method, resource pattern, operation name): section 5.1.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"checkoutSessions"), "CreateCheckoutSession"),
    ("GET", re.compile(rf"checkoutSessions/{_ID}"), "GetCheckoutSession"),
    ("PATCH", re.compile(rf"checkoutSessions/{_ID}"), "UpdateCheckoutSession"),
    ("POST", re.compile(rf"checkoutSessions/{_ID}/complete"), "CompleteCheckoutSession"),
    ("GET", re.compile(rf"chargePermissions/{_ID}"), "GetChargePermission"),
    ("PATCH", re.compile(rf"chargePermissions/{_ID}"), "UpdateChargePermission"),
    ("DELETE", re.compile(rf"chargePermissions/{_ID}/close"), "CloseChargePermission"),
    ("POST", re.compile(r"charges"), "CreateCharge"),
    ("GET", re.compile(rf"charges/{_ID}"), "GetCharge"),
    ("POST", re.compile(rf"charges/{_ID}/capture"), "CaptureCharge"),
    ("DELETE", re.compile(rf"charges/{_ID}/cancel"), "CancelCharge"),
    ("POST", re.compile(r"refunds"), "CreateRefund"),
    ("GET", re.compile(rf"refunds/{_ID}"), "GetRefund"),
]
OPERATIONS = tuple(name for _, _, name in _ROUTES)

# Section 7 / labs sample: these POSTs need an idempotency key; Complete takes one optionally.
KEY_REQUIRED = frozenset({"CreateCheckoutSession", "CreateCharge", "CaptureCharge", "CreateRefund"})
_SUCCESS_STATUS = {"CreateCheckoutSession": 201, "CreateCharge": 201, "CreateRefund": 201}


def route(method: str, resource: str, path: str) -> tuple[str, str | None]:
    """(operation, object id) for a request, or the 404/405 Amazon answers."""
    path_known = False
    for route_method, pattern, name in _ROUTES:
        found = pattern.fullmatch(resource)
        if found is None:
            continue
        path_known = True
        if route_method == method:
            return name, found.groupdict().get("id")
    if path_known:
        raise SimulatorError(405, "UnsupportedOperation", f"{method} is not supported on {path}")
    raise SimulatorError(404, "ResourceNotFound", f"No resource at {path}")


def execute(
    store: Store,
    operation: str,
    env: str,
    object_id: str | None,
    payload: Any,
    *,
    base_url: str,
    force_pending: bool,
    simulation: str | None = None,
) -> tuple[int, JSONObject]:
    """Apply one authenticated operation to the store: (HTTP status, response body)."""
    status = _SUCCESS_STATUS.get(operation, 200)
    oid = object_id or ""
    if operation == "CreateCheckoutSession":
        return status, store.sessions.create(env, payload, hosted_base_url=base_url)
    if operation == "GetCheckoutSession":
        return status, store.sessions.get(env, oid)
    if operation == "UpdateCheckoutSession":
        return status, store.sessions.update(env, oid, payload, hosted_base_url=base_url)
    if operation == "CompleteCheckoutSession":
        return store.sessions.complete(
            env, oid, payload, force_pending=force_pending, simulation=simulation
        )
    if operation == "GetChargePermission":
        return status, store.permissions.get(env, oid)
    if operation == "UpdateChargePermission":
        return status, store.permissions.update(env, oid, payload)
    if operation == "CloseChargePermission":
        return status, store.permissions.close(env, oid, payload, simulation=simulation)
    if operation == "CreateCharge":
        return status, store.charges.create(env, payload, simulation=simulation)
    if operation == "GetCharge":
        return status, store.charges.get(env, oid)
    if operation == "CaptureCharge":
        return status, store.charges.capture(env, oid, payload, simulation=simulation)
    if operation == "CancelCharge":
        return status, store.charges.cancel(env, oid, payload)
    if operation == "CreateRefund":
        return status, store.refunds.create(env, payload)
    if operation == "GetRefund":
        return status, store.refunds.get(env, oid)
    raise SimulatorError(404, "ResourceNotFound", f"unknown operation {operation}")
