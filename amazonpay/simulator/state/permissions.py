"""The Charge Permission state machine: Chargeable, NonChargeable, Closed
(docs/amazon-pay-api.md sections 4, 5.1 and 6)."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from amazonpay.simulator.state.core import (
    SANDBOX,
    Core,
    JSONObject,
    SimulatorError,
    add_months,
    amz_timestamp,
    find,
    merge,
    object_body,
    parse_price,
    price_json,
    unique_id,
)

ONE_TIME_PERMISSION_LIFETIME = timedelta(days=180)  # section 5.1
EXTENDED_LIFETIME_MONTHS = 13  # section 4: paymentDetails.extendExpiration
PERMISSION_STATES = ("Chargeable", "NonChargeable", "Closed")


@dataclass
class PermissionRecord:
    body: JSONObject
    environment: str
    expires_at: datetime | None = None


def _expiry(session: JSONObject, now: datetime) -> datetime | None:
    """A OneTime Charge Permission expires after 180 days, or 13 months with extendExpiration
    (sections 4 and 5.1); Recurring and PaymentMethodOnFile ones have no fixed expiry."""
    if session["chargePermissionType"] != "OneTime":
        return None
    if session["paymentDetails"].get("extendExpiration") is True:
        return add_months(now, EXTENDED_LIFETIME_MONTHS)
    return now + ONE_TIME_PERMISSION_LIFETIME


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.randbelow(10**7):07d}-{secrets.randbelow(10**7):07d}"


class Permissions:
    """Charge Permissions by id. Closing one may cancel its pending charges through
    `on_close_cancel`, which the store wires to the charges."""

    def __init__(self, core: Core, on_close_cancel: Callable[[str], None]) -> None:
        self._core = core
        self._on_close_cancel = on_close_cancel
        self.records: dict[str, PermissionRecord] = {}

    def tick(self) -> None:
        """Close the Charge Permissions whose expiry has come (section 5.1)."""
        now = self._core.now()
        for permission_id, record in self.records.items():
            due = record.expires_at is not None and now >= record.expires_at
            if due and record.body["statusDetails"]["state"] != "Closed":
                record.body["statusDetails"] = {
                    "state": "Closed",
                    "reasons": [
                        {
                            "reasonCode": "Expired",
                            "reasonDescription": "The Charge Permission expired.",
                        }
                    ],
                    "lastUpdatedTimestamp": amz_timestamp(now),
                }
                self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)

    def find(self, env: str, permission_id: str) -> JSONObject:
        return find(self.records, env, permission_id).body

    def create(self, env: str, session: JSONObject) -> str:
        """The Charge Permission a completed Checkout Session leaves behind."""
        # S01 (sandbox) / P01 (live) style ids (contract: `S01-…` / `P01-…`).
        prefix = "S01" if env == SANDBOX else "P01"
        permission_id = unique_id(lambda: _new_id(prefix), self.records)
        now = self._core.now()
        amount = session["paymentDetails"].get("chargeAmount")
        limits = None
        if amount is not None:
            value, currency = parse_price(amount, "chargeAmount")
            limits = {
                "amountLimit": price_json(value, currency),
                "amountBalance": price_json(value, currency),
            }
        permission_type = session["chargePermissionType"]
        expires_at = _expiry(session, now)
        body: JSONObject = {
            "chargePermissionId": permission_id,
            "chargePermissionReferenceId": None,
            "chargePermissionType": permission_type,
            "buyer": copy.deepcopy(session["buyer"]),
            "shippingAddress": copy.deepcopy(session["shippingAddress"]),
            "billingAddress": copy.deepcopy(session["billingAddress"]),
            "paymentPreferences": copy.deepcopy(session["paymentPreferences"]),
            "merchantMetadata": copy.deepcopy(session["merchantMetadata"]),
            "recurringMetadata": copy.deepcopy(session["recurringMetadata"]),
            "platformId": session["platformId"],
            "limits": limits,
            "presentmentCurrency": session["paymentDetails"].get("presentmentCurrency"),
            "statusDetails": {
                "state": "Chargeable",
                "reasons": None,
                "lastUpdatedTimestamp": amz_timestamp(now),
            },
            "creationTimestamp": amz_timestamp(now),
            "expirationTimestamp": amz_timestamp(expires_at) if expires_at else None,
            "releaseEnvironment": env,
        }
        self.records[permission_id] = PermissionRecord(
            body=body, environment=env, expires_at=expires_at
        )
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)
        return permission_id

    def get(self, env: str, permission_id: str) -> JSONObject:
        return copy.deepcopy(self.find(env, permission_id))

    def update(self, env: str, permission_id: str, body: Any) -> JSONObject:
        permission = self.find(env, permission_id)
        patch = object_body(body)
        unknown = sorted(set(patch) - {"merchantMetadata", "recurringMetadata"})
        if unknown:
            raise SimulatorError(
                400, "UnrecognizedField", f"The field {unknown[0]} is not allowed in this request"
            )
        if permission["statusDetails"]["state"] == "Closed":
            raise SimulatorError(
                422, "InvalidChargePermissionStatus", "The Charge Permission is Closed"
            )
        merge(permission, patch)
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id, "ATTRIBUTE_CHANGE")
        return copy.deepcopy(permission)

    def close(
        self, env: str, permission_id: str, body: Any, *, simulation: str | None = None
    ) -> JSONObject:
        permission = self.find(env, permission_id)
        request = object_body(body)
        reason = request.get("closureReason")
        if not isinstance(reason, str) or not reason:
            raise SimulatorError(
                400, "MissingParameterValue", "closureReason is a required parameter"
            )
        if permission["statusDetails"]["state"] != "Closed":
            permission["statusDetails"] = {
                "state": "Closed",
                "reasons": [
                    {"reasonCode": simulation or "MerchantClosed", "reasonDescription": reason}
                ],
                "lastUpdatedTimestamp": self._core.stamp(),
            }
            self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)
            if request.get("cancelPendingCharges") is True:
                self._on_close_cancel(permission_id)
        return copy.deepcopy(permission)

    def set_state(self, permission_id: str, state: str, reason_code: str | None) -> JSONObject:
        """Control API: make a Charge Permission NonChargeable/Chargeable/Closed (section 6)."""
        record = self.records.get(permission_id)
        if record is None:
            raise SimulatorError(404, "ResourceNotFound", f"{permission_id} not found")
        if state not in PERMISSION_STATES:
            raise SimulatorError(400, "InvalidParameterValue", f"unknown state {state!r}")
        record.body["statusDetails"] = {
            "state": state,
            "reasons": [{"reasonCode": reason_code, "reasonDescription": None}]
            if reason_code
            else None,
            "lastUpdatedTimestamp": self._core.stamp(),
        }
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)
        return copy.deepcopy(record.body)
