"""The Charge Permission state machine: Chargeable, NonChargeable (with the reasons the buyer
must fix at Amazon), Closed (docs/amazon-pay-api.md sections 4, 5.1 and 6)."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
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

# Section 6: why a saved wallet needs the buyer at Amazon's update page (our wording).
NON_CHARGEABLE_REASONS: dict[str, str] = {
    "PaymentMethodInvalid": "The payment method is no longer valid.",
    "PaymentMethodDeleted": "The buyer deleted the payment method.",
    "BillingAddressDeleted": "The buyer deleted the billing address of the payment method.",
    "PaymentMethodExpired": "The payment method has expired.",
    "PaymentMethodNotAllowed": "The payment method is not allowed for this transaction.",
    "PaymentMethodNotSet": "No payment method is set.",
    "MFAFailed": "The buyer did not pass multi-factor authentication.",
}
CLOSED_REASONS: dict[str, str] = {
    "MerchantClosed": "The merchant closed the Charge Permission.",
    "BuyerClosed": "The buyer removed the saved payment method.",
    "AmazonClosed": "Amazon closed the Charge Permission.",
    "Expired": "The Charge Permission expired.",
}
# What a buyer can do to a saved wallet (control API): the problem each action causes.
BUYER_PROBLEMS: dict[str, str] = {
    "expire_card": "PaymentMethodExpired",
    "invalidate_card": "PaymentMethodInvalid",
    "delete_card": "PaymentMethodDeleted",
    "delete_billing_address": "BillingAddressDeleted",
}
BUYER_ACTIONS = (*BUYER_PROBLEMS, "fix_card", "close")


@dataclass(frozen=True)
class ScriptedCharge:
    """The outcome the control API scripted for a coming Create Charge."""

    outcome: str  # Authorized or a decline reason
    pending: bool = False


@dataclass
class PermissionRecord:
    body: JSONObject
    environment: str
    card: str = "1111"  # last digits of the buyer's simulated card (section 11)
    expires_at: datetime | None = None
    problems: list[str] = field(default_factory=list)  # NonChargeable reasons, oldest first
    closure: tuple[str, str] | None = None  # (reasonCode, reasonDescription) once Closed
    next_charges: list[ScriptedCharge] = field(default_factory=list)
    monthly_limit: tuple[Decimal, str] | None = None  # (amount, currency), else the default

    @property
    def state(self) -> str:
        if self.closure is not None:
            return "Closed"
        return "NonChargeable" if self.problems else "Chargeable"


def payment_descriptor(card: str) -> str:
    """How Amazon describes the buyer's payment method, e.g. `Visa ****1111` (section 4)."""
    return f"Visa ****{card}"


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
            if due and record.closure is None:
                record.closure = ("Expired", CLOSED_REASONS["Expired"])
                self._show_status(permission_id, record)

    def record(self, env: str, permission_id: str) -> PermissionRecord:
        return find(self.records, env, permission_id)

    def find(self, env: str, permission_id: str) -> JSONObject:
        return self.record(env, permission_id).body

    def _control_record(self, permission_id: str) -> PermissionRecord:
        """A record for the control API and the buyer's pages, in any environment."""
        record = self.records.get(permission_id)
        if record is None:
            raise SimulatorError(
                404, "ResourceNotFound", f"Charge Permission {permission_id} not found"
            )
        return record

    def _show_status(self, permission_id: str, record: PermissionRecord) -> None:
        """Write `statusDetails` from the record and send an IPN when it changed."""
        if record.closure is not None:
            reasons: list[JSONObject] | None = [
                {"reasonCode": record.closure[0], "reasonDescription": record.closure[1]}
            ]
        elif record.problems:
            reasons = [
                {"reasonCode": code, "reasonDescription": NON_CHARGEABLE_REASONS[code]}
                for code in record.problems
            ]
        else:
            reasons = None
        details = record.body["statusDetails"]
        if details["state"] == record.state and details["reasons"] == reasons:
            return
        record.body["statusDetails"] = {
            "state": record.state,
            "reasons": reasons,
            "lastUpdatedTimestamp": self._core.stamp(),
        }
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)

    def create(self, env: str, session: JSONObject, *, card: str = "1111") -> str:
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
        expires_at = _expiry(session, now)
        body: JSONObject = {
            "chargePermissionId": permission_id,
            "chargePermissionReferenceId": None,
            "chargePermissionType": session["chargePermissionType"],
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
            body=body, environment=env, card=card, expires_at=expires_at
        )
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id)
        return permission_id

    def get(self, env: str, permission_id: str) -> JSONObject:
        return copy.deepcopy(self.find(env, permission_id))

    def for_buyer(self, permission_id: str) -> JSONObject | None:
        """The Charge Permission as the buyer's update page sees it, in any environment."""
        record = self.records.get(permission_id)
        return copy.deepcopy(record.body) if record is not None else None

    def update(self, env: str, permission_id: str, body: Any) -> JSONObject:
        record = self.record(env, permission_id)
        patch = object_body(body)
        unknown = sorted(set(patch) - {"merchantMetadata", "recurringMetadata"})
        if unknown:
            raise SimulatorError(
                400, "UnrecognizedField", f"The field {unknown[0]} is not allowed in this request"
            )
        if record.closure is not None:
            raise SimulatorError(
                422, "InvalidChargePermissionStatus", "The Charge Permission is Closed"
            )
        merge(record.body, patch)
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id, "ATTRIBUTE_CHANGE")
        return copy.deepcopy(record.body)

    def close(
        self, env: str, permission_id: str, body: Any, *, simulation: str | None = None
    ) -> JSONObject:
        """Close Charge Permission (section 6); closing a Closed one changes nothing."""
        record = self.record(env, permission_id)
        request = object_body(body)
        reason = request.get("closureReason")
        if not isinstance(reason, str) or not reason:
            raise SimulatorError(
                400, "MissingParameterValue", "closureReason is a required parameter"
            )
        if record.closure is None:
            record.closure = (simulation or "MerchantClosed", reason)
            self._show_status(permission_id, record)
            if request.get("cancelPendingCharges") is True:
                self._on_close_cancel(permission_id)
        return copy.deepcopy(record.body)

    def set_state(self, permission_id: str, state: str, reason_codes: Sequence[str]) -> JSONObject:
        """Control API: put a Charge Permission in `state` with these reasons (section 6)."""
        record = self._control_record(permission_id)
        if state not in PERMISSION_STATES:
            raise SimulatorError(400, "InvalidParameterValue", f"unknown state {state!r}")
        allowed = {"NonChargeable": NON_CHARGEABLE_REASONS, "Closed": CLOSED_REASONS}.get(state, {})
        unknown = [code for code in reason_codes if code not in allowed]
        if unknown:
            raise SimulatorError(
                400,
                "InvalidParameterValue",
                f"{unknown[0]!r} is not a {state} reason; use one of {', '.join(allowed) or '-'}",
            )
        self._require_open(record)
        if state == "Closed":
            code = reason_codes[0] if reason_codes else "AmazonClosed"
            record.closure = (code, CLOSED_REASONS[code])
        elif state == "NonChargeable":
            record.problems = list(dict.fromkeys(reason_codes or ["PaymentMethodInvalid"]))
        else:
            record.problems = []
        self._show_status(permission_id, record)
        return copy.deepcopy(record.body)

    def buyer_action(self, permission_id: str, action: str, card: str | None = None) -> JSONObject:
        """What the buyer does to a saved wallet at Amazon (section 6): the card expires or
        becomes invalid, is deleted, is fixed on the update page, or the wallet is removed."""
        record = self._control_record(permission_id)
        if action not in BUYER_ACTIONS:
            raise SimulatorError(
                400, "InvalidParameterValue", f"action must be one of {', '.join(BUYER_ACTIONS)}"
            )
        self._require_open(record)
        if action == "close":
            record.closure = ("BuyerClosed", CLOSED_REASONS["BuyerClosed"])
        elif action == "fix_card":
            self._fix(permission_id, record, card)
        elif BUYER_PROBLEMS[action] not in record.problems:
            record.problems.append(BUYER_PROBLEMS[action])
        self._show_status(permission_id, record)
        return copy.deepcopy(record.body)

    def script_charges(self, permission_id: str, scripted: Sequence[ScriptedCharge]) -> JSONObject:
        """Control API: queue the outcomes of the coming Create Charge calls."""
        record = self._control_record(permission_id)
        record.next_charges.extend(scripted)
        return self.script_of(permission_id)

    def set_monthly_limit(
        self, permission_id: str, limit: tuple[Decimal, str] | None
    ) -> JSONObject:
        """Control API: this wallet's own monthly limit, or None for the default."""
        record = self._control_record(permission_id)
        record.monthly_limit = limit
        return self.script_of(permission_id)

    def script_of(self, permission_id: str) -> JSONObject:
        """What the control API shows of a permission's script and limit."""
        record = self._control_record(permission_id)
        limit = record.monthly_limit
        return {
            "chargePermissionId": permission_id,
            "next_charges": [
                {"outcome": s.outcome, "pending": s.pending} for s in record.next_charges
            ],
            "monthly_limit": None if limit is None else price_json(*limit),
        }

    def _fix(self, permission_id: str, record: PermissionRecord, card: str | None) -> None:
        if card is not None:
            if not (len(card) == 4 and card.isdigit()):
                raise SimulatorError(400, "InvalidParameterValue", "card must be 4 digits")
            record.card = card
        record.problems = []
        record.next_charges.clear()  # the script described the old payment method
        descriptor = [{"paymentDescriptor": payment_descriptor(record.card)}]
        record.body["paymentPreferences"] = descriptor
        # The payment method itself changed even when the state did not (section 10).
        self._core.emit("CHARGE_PERMISSION", permission_id, permission_id, "ATTRIBUTE_CHANGE")

    @staticmethod
    def _require_open(record: PermissionRecord) -> None:
        if record.closure is not None:
            raise SimulatorError(
                422, "InvalidChargePermissionStatus", "The Charge Permission is Closed for good"
            )
