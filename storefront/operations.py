"""Running one money-moving Amazon Pay call exactly once, through the operations ledger.

Every call that can move money or change what the buyer owns goes through here (Create Charge,
Capture, Cancel, Create Refund, Close Charge Permission; the return's Complete Checkout Session
uses the same ledger and leases with its own ownership checks in `storefront/checkout.py`):

1. the caller names the operation by our own key and gives the exact request and an
   idempotency key derived from that key (`Intent`);
2. `Operations.turn` claims it: one holder across threads, processes and instances, with a
   short lease kept alive while it works; everyone else gets the recorded outcome, waits a
   moment for a young claim, or is told it is busy - never a second call;
3. the holder calls Amazon with the stored request (a takeover replays exactly the same call)
   and records the answer with `ledger.decide` (with its effect, in one transaction) or
   `ledger.mark_pending` when the answer is unknown, for reconciliation to replay.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storefront.db import Claim, Store
from storefront.db.leases import LeaseKeeper
from storefront.states import ClaimState, OperationKind

__all__ = ["Intent", "Operations", "Turn", "TurnKind"]


@dataclass(frozen=True)
class Intent:
    """One Amazon call we mean to make once."""

    key: str  # our operation key, e.g. `charge:<ref>:1`, `refund:<request id>`
    kind: OperationKind
    reference: str  # the order or pending checkout it belongs to
    idempotency_key: str  # derived from `key`, so every retry and takeover sends the same
    request: Mapping[str, Any] = field(default_factory=dict)  # what a replay sends again
    charge_permission_id: str | None = None
    charge_id: str | None = None
    # Bind the pending checkout `reference` to this operation when claiming, so one order is
    # paid once whichever way (a Complete of another session, or another charge, is refused).
    bind_pending: bool = False

    def request_json(self) -> str:
        return json.dumps(dict(self.request), sort_keys=True, separators=(",", ":"))


class TurnKind(enum.Enum):
    HELD = "held"  # this caller holds the claim: make (or replay) the call, then record it
    DECIDED = "decided"  # decided before: show the recorded outcome, call nothing
    BUSY = "busy"  # someone else holds it, or is reconciling it: "being confirmed"
    FOREIGN = "foreign"  # the key belongs to another reference: refuse, call nothing
    OTHER_IN_FLIGHT = "other"  # the pending checkout is bound to another operation


@dataclass(frozen=True)
class Turn:
    kind: TurnKind
    claim: Claim | None
    owner: str | None = None

    def stored_request(self) -> dict[str, Any]:
        """The request recorded with the claim: what a takeover must send again."""
        if self.claim is None or not self.claim.request:
            return {}
        loaded: dict[str, Any] = json.loads(self.claim.request)
        return loaded


class Operations:
    """Claims operations in the ledger; one per app, thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        lease: timedelta,
        wait: timedelta,
        leases: LeaseKeeper,
        poll_interval: float = 0.1,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.lease = lease
        self.wait = wait
        self.leases = leases
        self.poll_interval = poll_interval

    @contextmanager
    def turn(self, intent: Intent) -> Iterator[Turn]:
        """Yield this caller's turn at `intent`; while HELD, the lease is kept alive.

        Leaving the block by an exception lets the lease go at once, so the next visit (or
        `flask reconcile`) takes the operation over and replays the stored request.
        """
        ledger = self.store.ledger
        owner = secrets.token_hex(8)
        deadline = self.clock() + self.wait
        while True:
            attempt = ledger.claim(
                intent.key,
                intent.reference,
                owner=owner,
                now=self.clock(),
                lease=self.lease,
                start_processing=intent.bind_pending,
                kind=intent.kind,
                idempotency_key=intent.idempotency_key,
                request=intent.request_json(),
                charge_permission_id=intent.charge_permission_id,
                charge_id=intent.charge_id,
            )
            claim = attempt.claim
            if attempt.won:
                if attempt.processing is False:  # inserted, then rolled back: no row kept
                    yield Turn(TurnKind.OTHER_IN_FLIGHT, None)
                    return
                # Taken over: the pending checkout was bound to this key when the claim was
                # first made, unless another operation holds it now.
                if (
                    intent.bind_pending
                    and attempt.processing is None
                    and not self.store.checkouts.start_processing(intent.reference, intent.key)
                ):
                    ledger.release(intent.key, owner)
                    yield Turn(TurnKind.OTHER_IN_FLIGHT, claim)
                    return
                with self.leases.holding(intent.key, owner):
                    yield Turn(TurnKind.HELD, claim, owner)
                return
            if claim.reference != intent.reference or claim.kind != intent.kind:
                yield Turn(TurnKind.FOREIGN, claim)
                return
            if claim.decided:
                yield Turn(TurnKind.DECIDED, claim)
                return
            if claim.status == ClaimState.PENDING:
                # Someone is reconciling it right now; a refresh shows the result.
                yield Turn(TurnKind.BUSY, claim)
                return
            # Wait only on a young claim (a double click: its holder is about to decide).
            if self.clock() >= min(deadline, claim.updated_at + self.wait):
                yield Turn(TurnKind.BUSY, claim)
                return
            self.sleep(self.poll_interval)
