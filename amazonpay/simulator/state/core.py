"""What every state machine of the simulator shares: errors, IPN events, the clock, timestamps,
prices and ids (docs/amazon-pay-api.md sections 4, 5.4 and 10)."""

from __future__ import annotations

import calendar
import copy
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar

JSONObject = dict[str, Any]
Clock = Callable[[], datetime]

SANDBOX = "Sandbox"
LIVE = "Live"

_REASON_DESCRIPTIONS = {
    "BuyerCanceled": "The buyer canceled the checkout.",
    "Declined": "The payment was declined.",
    "Expired": "The Checkout Session expired after 24 hours.",
    "AmazonRejected": "Amazon rejected the transaction.",
    "AmazonCanceled": "Amazon canceled the transaction.",
}


class SimulatorError(Exception):
    """An Amazon-style error answer: HTTP status and `{"reasonCode", "message"}` (section 5.4)."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(f"{status} {reason_code}: {message}")
        self.status = status
        self.reason_code = reason_code
        self.message = message

    def body(self) -> JSONObject:
        return {"reasonCode": self.reason_code, "message": self.message}


@dataclass(frozen=True)
class Event:
    """A state or attribute change that becomes an IPN (section 10)."""

    object_type: str  # CHARGE_PERMISSION, CHARGE, REFUND
    object_id: str
    charge_permission_id: str
    notification_type: str = "STATE_CHANGE"


class Core:
    """The clock every machine reads and the queue of IPN events they all write to."""

    def __init__(self, now: Clock) -> None:
        self.now = now
        self.events: list[Event] = []

    def stamp(self) -> str:
        return amz_timestamp(self.now())

    def status(self, state: str, reason: str | None = None) -> JSONObject:
        """`statusDetails` of a Checkout Session, Charge or Refund (section 4)."""
        return {
            "state": state,
            "reasonCode": reason,
            "reasonDescription": _REASON_DESCRIPTIONS.get(reason or ""),
            "lastUpdatedTimestamp": self.stamp(),
        }

    def emit(
        self, object_type: str, object_id: str, permission_id: str, kind: str = "STATE_CHANGE"
    ) -> None:
        self.events.append(Event(object_type, object_id, permission_id, kind))

    def drain(self) -> list[Event]:
        events, self.events = self.events, []
        return events


class Located(Protocol):
    """A stored object that lives in one environment."""

    environment: str


RecordT = TypeVar("RecordT", bound=Located)


def find(records: Mapping[str, RecordT], env: str, object_id: str) -> RecordT:
    """The record for `object_id`; a sandbox id is unknown on /live and vice versa (section 11)."""
    found = records.get(object_id)
    if found is None or found.environment != env:
        raise SimulatorError(
            404, "ResourceNotFound", f"The requested resource {object_id} was not found"
        )
    return found


def unique_id(make: Callable[[], str], taken: Container[str]) -> str:
    """A fresh id from `make` that is not in `taken`."""
    new = make()
    while new in taken:
        new = make()
    return new


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, on the month's last day when it is shorter."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def amz_timestamp(moment: datetime) -> str:
    """`20191015T204327Z`, the timestamp form of every object (section 4)."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _decimal(value: Any, field_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} must be a number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise SimulatorError(
            400, "InvalidParameterValue", f"{field_name} {value!r} is not a number"
        ) from None
    if not result.is_finite() or result < 0:
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} {value!r} is invalid")
    return result


def parse_price(value: Any, field_name: str) -> tuple[Decimal, str]:
    """`{amount, currencyCode}` with the amount as string or number (section 1.11)."""
    if not isinstance(value, Mapping):
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} must be an object")
    currency = value.get("currencyCode")
    if not isinstance(currency, str) or len(currency) != 3:
        raise SimulatorError(
            400, "InvalidParameterValue", f"{field_name}.currencyCode must be an ISO currency"
        )
    return _decimal(value.get("amount"), f"{field_name}.amount"), currency


def price_json(amount: Decimal, currency: str) -> JSONObject:
    text = f"{amount:.0f}" if currency == "JPY" else f"{amount:.2f}"
    return {"amount": text, "currencyCode": currency}


def same_price(a: Any, b: Any, field_name: str) -> bool:
    amount_a, currency_a = parse_price(a, field_name)
    amount_b, currency_b = parse_price(b, field_name)
    return amount_a == amount_b and currency_a == currency_b


def merge(target: JSONObject, patch: Mapping[str, Any]) -> None:
    """Deep-merge a request's JSON into a stored object (Update calls, section 5.1)."""
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def object_body(body: Any) -> JSONObject:
    if not isinstance(body, dict):
        raise SimulatorError(400, "InvalidRequestFormat", "The request body must be a JSON object")
    return body
