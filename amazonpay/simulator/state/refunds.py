"""The Refund state machine: RefundInitiated -> Refunded (docs/amazon-pay-api.md sections 4
and 5.1); refunds always settle later, on the simulator's clock."""

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


@dataclass
class RefundRecord:
    body: JSONObject
    environment: str
    refund_at: datetime
    charge_permission_id: str


class Refunds:
    """Refunds by id, each against a Captured Charge."""

    def __init__(self, core: Core, charges: Charges) -> None:
        self._core = core
        self._charges = charges
        self.records: dict[str, RefundRecord] = {}

    def tick(self) -> None:
        now = self._core.now()
        for refund_id, record in self.records.items():
            refund = record.body
            if refund["statusDetails"]["state"] == "RefundInitiated" and now >= record.refund_at:
                refund["statusDetails"] = self._core.status("Refunded")
                self._core.emit("REFUND", refund_id, record.charge_permission_id)

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
        self.records[refund_id] = RefundRecord(
            body=refund,
            environment=env,
            refund_at=now + REFUND_DELAY,
            charge_permission_id=permission_id,
        )
        self._core.emit("REFUND", refund_id, permission_id)
        return copy.deepcopy(refund)

    def get(self, env: str, refund_id: str) -> JSONObject:
        return copy.deepcopy(find(self.records, env, refund_id).body)
