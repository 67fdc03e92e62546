"""The Refund state machine: RefundInitiated -> Refunded | Declined (docs/amazon-pay-api.md
sections 4 and 5.1); refunds always settle later, on the simulator's clock."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from amazonpay.simulator.state.charges import Charges
from amazonpay.simulator.state.core import (
    Core,
    JSONObject,
    SimulatorError,
    amz_timestamp,
    find,
    object_body,
    parse_price,
    price_json,
    unique_id,
)

REFUND_DELAY = timedelta(seconds=5)
# What a refund settles to; a declined refund gives its amount back to the charge.
REFUND_OUTCOMES = ("Refunded", "Declined")
DECLINE_REASONS = ("AmazonRejected", "ProcessingFailure")
_MAX_SCRIPTED = 100


@dataclass
class RefundRecord:
    body: JSONObject
    environment: str
    refund_at: datetime
    charge_permission_id: str
    settle_to: tuple[str, str | None] = ("Refunded", None)  # (state, reasonCode)


def refund_outcome(outcome: str, reason: str | None) -> tuple[str, str | None]:
    """(state, reasonCode) a refund settles to; ValueError says what is wrong."""
    if outcome not in REFUND_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(REFUND_OUTCOMES)}")
    if outcome == "Refunded":
        return "Refunded", None
    reason = reason or "AmazonRejected"
    if reason not in DECLINE_REASONS:
        raise ValueError(f"reason_code must be one of {', '.join(DECLINE_REASONS)}")
    return "Declined", reason


class Refunds:
    """Refunds by id, each against a Captured Charge."""

    def __init__(self, core: Core, charges: Charges) -> None:
        self._core = core
        self._charges = charges
        self.records: dict[str, RefundRecord] = {}
        self.next_refunds: dict[str, list[tuple[str, str | None]]] = {}  # by charge id

    def tick(self) -> None:
        now = self._core.now()
        for refund_id, record in self.records.items():
            refund = record.body
            if refund["statusDetails"]["state"] == "RefundInitiated" and now >= record.refund_at:
                self._settle(refund_id, record.settle_to)

    def _settle(self, refund_id: str, outcome: tuple[str, str | None]) -> None:
        record = self.records[refund_id]
        refund = record.body
        state, reason = outcome
        refund["statusDetails"] = self._core.status(state, reason)
        if state == "Declined":
            # The money did not go back: the charge may be refunded up to it again.
            charge = self._charges.find(record.environment, refund["chargeId"])
            refunded, currency = parse_price(charge["refundedAmount"], "refundedAmount")
            amount, _ = parse_price(refund["refundAmount"], "refundAmount")
            charge["refundedAmount"] = price_json(refunded - amount, currency)
        self._core.emit("REFUND", refund_id, record.charge_permission_id)

    def set_outcome(self, refund_id: str, outcome: tuple[str, str | None]) -> JSONObject:
        """Control API: settle a RefundInitiated refund now."""
        record = self.records.get(refund_id)
        if record is None:
            raise SimulatorError(404, "ResourceNotFound", f"Refund {refund_id} not found")
        if record.body["statusDetails"]["state"] != "RefundInitiated":
            raise SimulatorError(422, "InvalidRefundStatus", "The Refund is not pending")
        self._settle(refund_id, outcome)
        return copy.deepcopy(record.body)

    def script(
        self, charge_id: str, outcome: tuple[str, str | None], count: int
    ) -> list[JSONObject]:
        """Control API: how the next `count` refunds of a charge settle, after those queued."""
        if charge_id not in self._charges.records:
            raise SimulatorError(404, "ResourceNotFound", f"Charge {charge_id} not found")
        if not 1 <= count <= _MAX_SCRIPTED:
            raise SimulatorError(
                400, "InvalidParameterValue", f"count must be 1 to {_MAX_SCRIPTED}"
            )
        queue = self.next_refunds.setdefault(charge_id, [])
        queue.extend([outcome] * count)
        return [{"outcome": state, "reason_code": reason} for state, reason in queue]

    def create(self, env: str, body: Any) -> JSONObject:
        request = object_body(body)
        charge_id = request.get("chargeId")
        if not isinstance(charge_id, str):
            raise SimulatorError(400, "MissingParameterValue", "chargeId is a required parameter")
        charge = self._charges.find(env, charge_id)
        if request.get("refundAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "refundAmount is a required parameter"
            )
        amount, currency = parse_price(request["refundAmount"], "refundAmount")
        if charge["statusDetails"]["state"] != "Captured":
            raise SimulatorError(
                422,
                "InvalidChargeStatus",
                f"You cannot refund a {charge['statusDetails']['state']} Charge",
            )
        captured, captured_currency = parse_price(charge["captureAmount"], "captureAmount")
        refunded, _ = parse_price(charge["refundedAmount"], "refundedAmount")
        if currency != captured_currency:
            raise SimulatorError(400, "CurrencyMismatch", "refundAmount currency differs")
        if amount + refunded > captured:
            raise SimulatorError(
                400, "TransactionAmountExceeded", "refundAmount exceeds the captured amount"
            )
        charge["refundedAmount"] = price_json(refunded + amount, currency)
        permission_id = charge["chargePermissionId"]
        refund_id = unique_id(
            lambda: f"{permission_id}-R{secrets.randbelow(10**6):06d}", self.records
        )
        now = self._core.now()
        refund: JSONObject = {
            "refundId": refund_id,
            "chargeId": charge_id,
            "refundAmount": price_json(amount, currency),
            "softDescriptor": request.get("softDescriptor"),
            "creationTimestamp": amz_timestamp(now),
            "statusDetails": self._core.status("RefundInitiated"),
            "releaseEnvironment": env,
        }
        queue = self.next_refunds.get(charge_id)
        self.records[refund_id] = RefundRecord(
            body=refund,
            environment=env,
            refund_at=now + REFUND_DELAY,
            charge_permission_id=permission_id,
            settle_to=queue.pop(0) if queue else ("Refunded", None),
        )
        self._core.emit("REFUND", refund_id, permission_id)
        return copy.deepcopy(refund)

    def get(self, env: str, refund_id: str) -> JSONObject:
        return copy.deepcopy(find(self.records, env, refund_id).body)
