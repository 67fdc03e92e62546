"""The Charge state machine: AuthorizationInitiated -> Authorized -> Captured, or Declined /
Canceled (docs/amazon-pay-api.md sections 4, 5.1, 5.3 and 11)."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from amazonpay.simulator.state.authorization import SETTLEMENTS, decide, decline_error
from amazonpay.simulator.state.core import (
    Core,
    JSONObject,
    SimulatorError,
    amz_timestamp,
    find,
    object_body,
    parse_price,
    price_json,
    same_price,
    unique_id,
)
from amazonpay.simulator.state.permissions import Permissions

PENDING_AUTHORIZATION_DELAY = timedelta(seconds=30)  # section 11: 0701 authorizes after ~30 s
AUTHORIZATION_LIFETIME = timedelta(days=30)  # section 5.1: an authorized Charge expires in 30 days
# Amazon captures asynchronously more than 7 days after the authorization ("asynchronous
# processing" page); how long CaptureInitiated lasts is not published: our choice, 30 s.
ASYNC_CAPTURE_AFTER = timedelta(days=7)
CAPTURE_DELAY = timedelta(seconds=30)
# What a CaptureInitiated charge can settle to (control API).
CAPTURE_SETTLEMENTS = (
    "Captured",
    "SoftDeclined",
    "HardDeclined",
    "AmazonRejected",
    "ProcessingFailure",
)

# Section 6: the values Create Charge accepts.
CHARGE_INITIATORS = ("CITU", "MITU", "CITR", "MITR")
CHANNELS = ("Web", "Phone", "App", "Alexa", "PointOfSale", "FireTv", "Offline", "Amazon")


# Charges that hold or took money: they count against a monthly limit.
_SPENDING = ("AuthorizationInitiated", "Authorized", "CaptureInitiated", "Captured")


@dataclass
class ChargeRecord:
    body: JSONObject
    environment: str
    created: datetime
    settle_at: datetime | None = None  # when a pending authorization settles
    settle_to: str = "Authorized"  # ... and to what: Authorized or a decline reason
    capture_on_authorize: bool = False
    capture_later: bool = False  # capture on authorization as CaptureInitiated
    authorized_at: datetime | None = None
    capture_at: datetime | None = None  # when a CaptureInitiated capture completes


def _check_fields(request: JSONObject) -> None:
    """Refuse values Amazon does not know (section 6): 400 InvalidParameterValue."""
    for name, allowed in (("chargeInitiator", CHARGE_INITIATORS), ("channel", CHANNELS)):
        value = request.get(name)
        if value is not None and value not in allowed:
            raise SimulatorError(
                400,
                "InvalidParameterValue",
                f"{name} {value!r} is invalid; use one of {', '.join(allowed)}",
            )
    for name in ("captureNow", "canHandlePendingAuthorization"):
        if request.get(name) is not None and not isinstance(request[name], bool):
            raise SimulatorError(400, "InvalidParameterValue", f"{name} must be true or false")


class Charges:
    """Charges by id, and which charges each Charge Permission has."""

    def __init__(self, core: Core, permissions: Permissions) -> None:
        self._core = core
        self._permissions = permissions
        self.records: dict[str, ChargeRecord] = {}
        self.by_permission: dict[str, list[str]] = {}

    def find(self, env: str, charge_id: str) -> JSONObject:
        return find(self.records, env, charge_id).body

    def tick(self) -> None:
        now = self._core.now()
        for charge_id, record in self.records.items():
            charge = record.body
            state = charge["statusDetails"]["state"]
            if state == "AuthorizationInitiated" and record.settle_at and now >= record.settle_at:
                self._settle(charge_id, record.settle_to)
            elif (
                state == "Authorized"
                and record.authorized_at
                and now >= record.authorized_at + AUTHORIZATION_LIFETIME
            ):
                charge["statusDetails"] = self._core.status("Canceled", "ExpiredUnused")
                self._core.emit("CHARGE", charge_id, charge["chargePermissionId"])
            elif state == "CaptureInitiated" and record.capture_at and now >= record.capture_at:
                self._finish_capture(charge_id, "Captured")

    def new(
        self,
        env: str,
        permission_id: str,
        amount: Decimal,
        currency: str,
        *,
        capture: bool,
        pending: bool,
        settle_to: str = "Authorized",
        capture_later: bool = False,
        merchant_metadata: Any = None,
        soft_descriptor: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A Charge on `permission_id`, authorized now, or pending until it settles to
        `settle_to` on the clock (section 11)."""
        charge_id = unique_id(
            lambda: f"{permission_id}-C{secrets.randbelow(10**6):06d}", self.records
        )
        now = self._core.now()
        charge: JSONObject = {
            "chargeId": charge_id,
            "chargePermissionId": permission_id,
            "chargeAmount": price_json(amount, currency),
            "captureAmount": None,
            "refundedAmount": None,
            "convertedAmount": None,
            "conversionRate": None,
            "softDescriptor": soft_descriptor,
            "merchantMetadata": copy.deepcopy(merchant_metadata),
            "providerMetadata": {"providerReferenceId": None},
            "statusDetails": self._core.status("AuthorizationInitiated"),
            "creationTimestamp": amz_timestamp(now),
            "expirationTimestamp": amz_timestamp(now + AUTHORIZATION_LIFETIME),
            "releaseEnvironment": env,
            "channel": None,
            "chargeInitiator": None,
            "platformId": None,
            "webCheckoutDetails": None,
        }
        if extra:
            charge.update({k: copy.deepcopy(v) for k, v in extra.items() if k in charge})
        record = ChargeRecord(
            body=charge,
            environment=env,
            capture_on_authorize=capture,
            capture_later=capture_later,
            created=now,
        )
        self.records[charge_id] = record
        self.by_permission.setdefault(permission_id, []).append(charge_id)
        if pending:
            record.settle_at = now + PENDING_AUTHORIZATION_DELAY
            record.settle_to = settle_to
            self._core.emit("CHARGE", charge_id, permission_id)
        else:
            self._authorize(charge_id)
        return charge_id

    def _settle(self, charge_id: str, outcome: str) -> None:
        """End a pending authorization: Authorized (or Captured), or Declined with a reason."""
        if outcome == "Authorized":
            self._authorize(charge_id)
            return
        record = self.records[charge_id]
        record.settle_at = None
        record.body["statusDetails"] = self._core.status("Declined", outcome)
        self._core.emit("CHARGE", charge_id, record.body["chargePermissionId"])

    def _authorize(self, charge_id: str) -> None:
        record = self.records[charge_id]
        charge = record.body
        record.settle_at = None
        record.authorized_at = self._core.now()
        if record.capture_on_authorize:
            self._capture(record, charge["chargeAmount"], later=record.capture_later)
        else:
            charge["statusDetails"] = self._core.status("Authorized")
        self._core.emit("CHARGE", charge_id, charge["chargePermissionId"])

    def _capture(self, record: ChargeRecord, amount: JSONObject, *, later: bool) -> None:
        """Capture `amount` now (Captured) or asynchronously (CaptureInitiated, then Captured)."""
        charge = record.body
        charge["captureAmount"] = copy.deepcopy(amount)
        if later:
            record.capture_at = self._core.now() + CAPTURE_DELAY
            charge["statusDetails"] = self._core.status("CaptureInitiated")
            return
        charge["refundedAmount"] = price_json(Decimal(0), amount["currencyCode"])
        charge["statusDetails"] = self._core.status("Captured")

    def _finish_capture(self, charge_id: str, outcome: str) -> None:
        """End a CaptureInitiated capture: Captured, or Declined with a reason."""
        record = self.records[charge_id]
        charge = record.body
        record.capture_at = None
        if outcome == "Captured":
            self._capture(record, charge["captureAmount"], later=False)
        else:
            charge["statusDetails"] = self._core.status("Declined", outcome)
        self._core.emit("CHARGE", charge_id, charge["chargePermissionId"])

    def create(self, env: str, body: Any, *, simulation: str | None = None) -> JSONObject:
        """Create Charge (section 6) on a Chargeable permission; 201 with the Charge."""
        request = object_body(body)
        permission_id = request.get("chargePermissionId")
        if not isinstance(permission_id, str):
            raise SimulatorError(
                400, "MissingParameterValue", "chargePermissionId is a required parameter"
            )
        permission = self._permissions.record(env, permission_id)
        if request.get("chargeAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "chargeAmount is a required parameter"
            )
        amount, currency = parse_price(request["chargeAmount"], "chargeAmount")
        _check_fields(request)
        if permission.state != "Chargeable":
            raise SimulatorError(
                422, "InvalidChargePermissionStatus", f"The Charge Permission is {permission.state}"
            )
        can_wait = request.get("canHandlePendingAuthorization") is True
        decision = decide(
            permission,
            simulation=simulation,
            can_wait=can_wait,
            capture_now=request.get("captureNow") is True,
            amount=amount,
            currency=currency,
            spent_this_month=self._spent_this_month(permission_id, currency),
        )
        if decision.pending and not can_wait:
            # Section 5.1: without canHandlePendingAuthorization a slow authorization is
            # declined at once instead of answered as AuthorizationInitiated.
            raise SimulatorError(
                400,
                "TransactionTimedOut",
                "The authorization did not complete in time and canHandlePendingAuthorization "
                "was not set",
            )
        if not decision.pending and decision.outcome != "Authorized":
            raise decline_error(decision.outcome)
        charge_id = self.new(
            env,
            permission_id,
            amount,
            currency,
            capture=request.get("captureNow") is True,
            pending=decision.pending,
            settle_to=decision.outcome,
            capture_later=decision.capture_later,
            merchant_metadata=request.get("merchantMetadata"),
            soft_descriptor=request.get("softDescriptor"),
            extra={
                k: request.get(k)
                for k in ("channel", "chargeInitiator", "platformId", "providerMetadata")
                if request.get(k) is not None
            },
        )
        return copy.deepcopy(self.records[charge_id].body)

    def _spent_this_month(self, permission_id: str, currency: str) -> Decimal:
        """What a permission's live charges in `currency` took this calendar month (UTC)."""
        now = self._core.now()
        spent = Decimal(0)
        for charge_id in self.by_permission.get(permission_id, []):
            record = self.records[charge_id]
            charge = record.body
            if charge["statusDetails"]["state"] not in _SPENDING:
                continue
            if (record.created.year, record.created.month) != (now.year, now.month):
                continue
            price = charge["captureAmount"] or charge["chargeAmount"]
            amount, charge_currency = parse_price(price, "chargeAmount")
            if charge_currency == currency:
                spent += amount
        return spent

    def get(self, env: str, charge_id: str) -> JSONObject:
        return copy.deepcopy(self.find(env, charge_id))

    def capture(
        self, env: str, charge_id: str, body: Any, *, simulation: str | None = None
    ) -> JSONObject:
        """Capture Charge (section 5.1): all or part of the authorized amount, once."""
        record = find(self.records, env, charge_id)
        charge = record.body
        request = object_body(body)
        if request.get("captureAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "captureAmount is a required parameter"
            )
        amount, currency = parse_price(request["captureAmount"], "captureAmount")
        state = charge["statusDetails"]["state"]
        if state == "Captured" and same_price(
            request["captureAmount"], charge["captureAmount"], "captureAmount"
        ):
            return copy.deepcopy(charge)
        if state != "Authorized":
            raise SimulatorError(422, "InvalidChargeStatus", f"You cannot capture a {state} Charge")
        authorized, authorized_currency = parse_price(charge["chargeAmount"], "chargeAmount")
        if currency != authorized_currency:
            raise SimulatorError(400, "CurrencyMismatch", "captureAmount currency differs")
        if amount > authorized:
            raise SimulatorError(
                400, "TransactionAmountExceeded", "captureAmount exceeds the authorized amount"
            )
        if request.get("softDescriptor") is not None:
            charge["softDescriptor"] = request["softDescriptor"]
        # Asynchronous when simulated, or more than 7 days after the authorization.
        late = (
            record.authorized_at is not None
            and self._core.now() - record.authorized_at > ASYNC_CAPTURE_AFTER
        )
        later = simulation == "CaptureInitiated" or late
        self._capture(record, price_json(amount, currency), later=later)
        self._core.emit("CHARGE", charge_id, charge["chargePermissionId"])
        return copy.deepcopy(charge)

    def cancel(self, env: str, charge_id: str, body: Any) -> JSONObject:
        record = find(self.records, env, charge_id)
        charge = record.body
        request = object_body(body)
        reason = request.get("cancellationReason")
        state = charge["statusDetails"]["state"]
        if state == "Canceled":
            return copy.deepcopy(charge)
        if state not in ("AuthorizationInitiated", "Authorized"):
            raise SimulatorError(422, "InvalidChargeStatus", f"You cannot cancel a {state} Charge")
        charge["statusDetails"] = self._core.status("Canceled", "MerchantCanceled")
        charge["statusDetails"]["reasonDescription"] = reason if isinstance(reason, str) else None
        record.settle_at = None
        self._core.emit("CHARGE", charge_id, charge["chargePermissionId"])
        return copy.deepcopy(charge)

    def cancel_pending(self, permission_id: str) -> None:
        """Close Charge Permission with `cancelPendingCharges: true` (section 6)."""
        for charge_id in self.by_permission.get(permission_id, []):
            charge = self.records[charge_id].body
            if charge["statusDetails"]["state"] in ("AuthorizationInitiated", "Authorized"):
                charge["statusDetails"] = self._core.status("Canceled", "ChargePermissionCanceled")
                self._core.emit("CHARGE", charge_id, permission_id)

    def set_outcome(self, charge_id: str, outcome: str) -> JSONObject:
        """Control API: settle a pending authorization (Authorized or a decline) or a
        CaptureInitiated capture (Captured or a decline) now."""
        record = self.records.get(charge_id)
        if record is None:
            raise SimulatorError(404, "ResourceNotFound", f"{charge_id} not found")
        outcome = "HardDeclined" if outcome == "Declined" else outcome
        state = record.body["statusDetails"]["state"]
        allowed = {
            "AuthorizationInitiated": SETTLEMENTS,
            "CaptureInitiated": CAPTURE_SETTLEMENTS,
        }.get(state)
        if allowed is None:
            raise SimulatorError(422, "InvalidChargeStatus", f"The Charge is {state}, not pending")
        if outcome not in allowed:
            raise SimulatorError(
                400, "InvalidParameterValue", f"outcome must be one of {', '.join(allowed)}"
            )
        if state == "CaptureInitiated":
            self._finish_capture(charge_id, outcome)
        else:
            self._settle(charge_id, outcome)
        return copy.deepcopy(record.body)
