"""The simulator's side of the soak: its control API (faults, clock, request log) and what it
holds (sessions, charges), read back through the signed API as the shop's own client would."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from amazonpay.client import AmazonPayClient
from tests.support.servers import KeyPair

TIMEOUT = 10.0

# What an injected fault is called in the soak's tables, from the simulator's fault body.
FAULT_KINDS = ("5xx", "429", "dropped-after-apply", "slow-after-apply", "pending-202")


@dataclass(frozen=True)
class FaultPlan:
    """One fault the soak scripts for one checkout session (amazonpay/simulator/README.md)."""

    label: str
    body: dict[str, Any]


def random_fault(rng: random.Random, *, one_time: bool) -> FaultPlan:
    """A fault at random: a few 5xx or 429 on Get or Complete, or one applied Complete whose
    answer is dropped, slow (sometimes past the shop's 8 s read timeout), or a 202."""
    kinds = ["5xx", "429", "dropped-after-apply", "slow-after-apply"]
    if one_time:  # a 202 names a pending charge: only a paying session has one
        kinds.append("pending-202")
    label = rng.choice(kinds)
    operation = rng.choice(["GetCheckoutSession", "CompleteCheckoutSession"])
    if label == "5xx":
        body = {
            "operation": operation,
            "kind": "status",
            "status": rng.choice([500, 502, 503, 504]),
            "count": rng.randint(1, 4),
        }
    elif label == "429":
        body = {
            "operation": operation,
            "kind": "status",
            "status": 429,
            "retry_after": 1,
            "count": rng.randint(1, 4),
        }
    elif label == "dropped-after-apply":
        body = {"operation": "CompleteCheckoutSession", "kind": "drop", "count": rng.randint(1, 2)}
    elif label == "slow-after-apply":
        body = {
            "operation": "CompleteCheckoutSession",
            "kind": "delay",
            "delay_ms": rng.choice([500, 2000, 5000, 9000]),
            "count": 1,
        }
    else:
        body = {"operation": "CompleteCheckoutSession", "kind": "pending", "count": 1}
    return FaultPlan(label, body)


def charge_fault(rng: random.Random, operation: str) -> FaultPlan:
    """A fault on the next Create Charge or Create Refund: a few 5xx or 429 (not applied), or
    one applied and its answer dropped."""
    label = rng.choice(["5xx", "429", "dropped-after-apply"])
    if label == "5xx":
        body: dict[str, Any] = {
            "operation": operation,
            "kind": "status",
            "status": rng.choice([500, 502, 503, 504]),
            "count": rng.randint(1, 3),
        }
    elif label == "429":
        body = {
            "operation": operation,
            "kind": "status",
            "status": 429,
            "retry_after": 1,
            "count": rng.randint(1, 3),
        }
    else:
        body = {"operation": operation, "kind": "drop", "count": 1}
    return FaultPlan(label, body)


def fault_label(entry: dict[str, Any]) -> str | None:
    """The soak's name for the fault a request-log entry says was applied (None: no fault)."""
    fault = entry.get("fault")
    if fault in (None, "replay"):
        return None
    if fault == "status":
        return "429" if entry.get("status") == 429 else "5xx"
    return {
        "drop": "dropped-after-apply",
        "delay": "slow-after-apply",
        "pending": "pending-202",
    }.get(str(fault), str(fault))


class SimulatorControl:
    """The simulator's unauthenticated `/_simulator/` control API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def add_fault(self, plan: FaultPlan, checkout_session_id: str | None) -> None:
        """Script `plan`; for Create Charge and Create Refund (no session in their path) it
        hits the next such call of anyone: the log says whose (`idempotency_key`)."""
        body = {**plan.body, "checkout_session_id": checkout_session_id}
        response = self.http.post(f"{self.base_url}/_simulator/faults", json=body, timeout=TIMEOUT)
        if response.status_code != 201:
            raise RuntimeError(f"simulator refused fault {body}: {response.text}")

    def script_charges(
        self, charge_permission_id: str, outcome: str, *, count: int = 1, pending: bool = False
    ) -> None:
        """The next `count` Create Charge outcomes of this saved wallet (a decline, or a slow
        authorization with `pending`)."""
        response = self.http.post(
            f"{self.base_url}/_simulator/charge-permissions/{charge_permission_id}/next-charges",
            json={"outcome": outcome, "count": count, "pending": pending},
            timeout=TIMEOUT,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"simulator refused next-charges: {response.text}")

    def script_refunds(self, charge_id: str, outcome: str, *, count: int = 1) -> None:
        """How the next `count` refunds of this charge settle (Declined: AmazonRejected)."""
        response = self.http.post(
            f"{self.base_url}/_simulator/charges/{charge_id}/next-refunds",
            json={"outcome": outcome, "reason_code": "AmazonRejected", "count": count},
            timeout=TIMEOUT,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"simulator refused next-refunds: {response.text}")

    def pending_faults(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base_url}/_simulator/faults", timeout=TIMEOUT)
        response.raise_for_status()
        faults: list[dict[str, Any]] = response.json()
        return faults

    def drop_faults(self) -> None:
        """Clear the faults left unplayed (the reset also clears the log: read it first)."""
        response = self.http.post(
            f"{self.base_url}/_simulator/reset", json={"data": False}, timeout=TIMEOUT
        )
        response.raise_for_status()

    def advance_clock(self, seconds: float) -> None:
        response = self.http.post(
            f"{self.base_url}/_simulator/clock", json={"advance_seconds": seconds}, timeout=TIMEOUT
        )
        response.raise_for_status()

    def request_log(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base_url}/_simulator/requests", timeout=TIMEOUT)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries


class LogCollector:
    """Keeps the whole request log: the simulator keeps only its last 10,000 entries, so it is
    read every `every` seconds and the new tail appended (the log only grows at its end)."""

    def __init__(self, control: SimulatorControl, every: float = 2.0) -> None:
        self.control = control
        self.every = every
        self.entries: list[dict[str, Any]] = []
        self.gaps = 0  # reads that found no overlap with the last one: entries may be lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.collect()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.collect()

    def collect(self) -> None:
        fresh = self.control.request_log()
        if not self.entries:
            self.entries.extend(fresh)
            return
        last = self.entries[-1]
        for index in range(len(fresh) - 1, -1, -1):
            if fresh[index] == last:
                self.entries.extend(fresh[index + 1 :])
                return
        self.gaps += 1
        self.entries.extend(fresh)


@dataclass(frozen=True)
class AmazonSession:
    """A checkout session as the simulator holds it, with its charge when it has one."""

    checkout_session_id: str
    state: str
    reason_code: str | None
    charge_permission_type: str | None
    charge_permission_id: str | None
    charge_id: str | None
    charge_state: str | None
    charge_amount: Decimal | None

    @property
    def money_moved(self) -> bool:
        """Completed and left something real: a saved wallet, or a charge that was not declined."""
        if self.state != "Completed":
            return False
        if self.charge_permission_type == "PaymentMethodOnFile":
            return self.charge_permission_id is not None
        return self.charge_state in ("Authorized", "CaptureInitiated", "Captured")


def read_sessions(
    simulator_url: str, keys: KeyPair, session_ids: list[str]
) -> dict[str, AmazonSession]:
    """Get Checkout Session (and Get Charge) for each id, signed with the merchant's key."""
    client = AmazonPayClient(
        public_key_id=keys.key_id,
        private_key=keys.private_key_path.read_bytes(),
        endpoint=simulator_url,
    )
    found: dict[str, AmazonSession] = {}
    for session_id in session_ids:
        raw = client.get_checkout_session(session_id).raw
        charge_id = raw.get("chargeId")
        charge_state = None
        if charge_id:
            charge_state = client.get_charge(str(charge_id)).raw["statusDetails"]["state"]
        amount = ((raw.get("paymentDetails") or {}).get("chargeAmount") or {}).get("amount")
        found[session_id] = AmazonSession(
            checkout_session_id=session_id,
            state=raw["statusDetails"]["state"],
            reason_code=raw["statusDetails"].get("reasonCode"),
            charge_permission_type=raw.get("chargePermissionType"),
            charge_permission_id=raw.get("chargePermissionId"),
            charge_id=charge_id,
            charge_state=charge_state,
            charge_amount=Decimal(str(amount)) if amount is not None else None,
        )
    return found


@dataclass(frozen=True)
class AmazonObject:
    """A Charge or a Refund as the simulator holds it (Get Charge / Get Refund)."""

    object_id: str
    state: str
    amount: Decimal
    parent_id: str  # a charge's charge permission, a refund's charge
    refunded: Decimal  # a charge's refundedAmount (0 for a refund)


def read_objects(
    simulator_url: str, keys: KeyPair, charge_ids: list[str], refund_ids: list[str]
) -> dict[str, AmazonObject]:
    """Get Charge and Get Refund for each id, signed with the merchant's key."""
    client = AmazonPayClient(
        public_key_id=keys.key_id,
        private_key=keys.private_key_path.read_bytes(),
        endpoint=simulator_url,
    )
    found: dict[str, AmazonObject] = {}
    for charge_id in charge_ids:
        raw = client.get_charge(charge_id).raw
        refunded = (raw.get("refundedAmount") or {}).get("amount") or "0"
        found[charge_id] = AmazonObject(
            charge_id,
            raw["statusDetails"]["state"],
            Decimal(str(raw["chargeAmount"]["amount"])),
            str(raw.get("chargePermissionId")),
            Decimal(str(refunded)),
        )
    for refund_id in refund_ids:
        raw = client.get_refund(refund_id).raw
        found[refund_id] = AmazonObject(
            refund_id,
            raw["statusDetails"]["state"],
            Decimal(str(raw["refundAmount"]["amount"])),
            str(raw.get("chargeId")),
            Decimal("0"),
        )
    return found
