"""Scripted misbehaviour for tests: answer an error, drop the connection, answer late, or make
Complete pending, for the next calls of an operation (README.md, "Fault injection")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amazonpay.simulator.state import JSONObject

FAULT_KINDS = ("status", "drop", "delay", "pending")
STATUS_REASONS = {
    408: "RequestTimeout",
    425: "TooEarly",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class Fault:
    """One scripted misbehaviour for the next `count` calls of an operation."""

    operation: str
    kind: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay_ms: int = 0
    checkout_session_id: str | None = None

    def to_json(self) -> JSONObject:
        return {
            "operation": self.operation,
            "kind": self.kind,
            "count": self.count,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "checkout_session_id": self.checkout_session_id,
        }

    @property
    def reason_code(self) -> str:
        return STATUS_REASONS.get(self.status, "ServiceUnavailable")


def parse_fault(data: Mapping[str, Any], operations: Sequence[str]) -> Fault:
    """A Fault from the control API's JSON; ValueError says what is wrong."""
    operation = data.get("operation")
    kind = data.get("kind", "status")
    if operation not in operations:
        raise ValueError(f"operation must be one of {', '.join(operations)}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    if kind == "pending" and operation != "CompleteCheckoutSession":
        raise ValueError("kind 'pending' only applies to CompleteCheckoutSession")
    try:
        count = int(data.get("count", 1))
        status = int(data.get("status", 429 if data.get("retry_after") else 503))
        retry_after = data.get("retry_after")
        retry_after = None if retry_after is None else int(retry_after)
        delay_ms = int(data.get("delay_ms", 0))
    except (TypeError, ValueError):
        raise ValueError("count, status, retry_after and delay_ms must be integers") from None
    if count < 1 or not 400 <= status <= 599 or delay_ms < 0:
        raise ValueError("count must be >= 1, status 4xx/5xx, delay_ms >= 0")
    session_id = data.get("checkout_session_id")
    return Fault(
        operation=str(operation),
        kind=str(kind),
        count=count,
        status=status,
        retry_after=retry_after,
        delay_ms=delay_ms,
        checkout_session_id=str(session_id) if session_id else None,
    )


class FaultBook:
    """The pending faults, used up in order; the caller holds the lock."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def take(self, operation: str, object_id: str | None) -> Fault | None:
        for fault in self._faults:
            if fault.operation != operation or fault.count <= 0:
                continue
            if fault.checkout_session_id is not None and fault.checkout_session_id != object_id:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def to_json(self) -> list[JSONObject]:
        return [fault.to_json() for fault in self._faults]

    def clear(self) -> None:
        self._faults.clear()
