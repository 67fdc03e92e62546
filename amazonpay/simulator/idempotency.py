"""Idempotent replay (docs/amazon-pay-api.md section 7): the first answer to a key is kept; the
same request again gets it back, a different request with that key is DuplicateIdempotencyKey."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from amazonpay import signing
from amazonpay.simulator.state import JSONObject, SimulatorError


@dataclass(frozen=True)
class Stored:
    fingerprint: str
    status: int
    body: JSONObject


def fingerprint(method: str, raw_path: str, body: bytes) -> str:
    """What must be equal for a replay: method, path (trailing slash aside) and body bytes."""
    path = signing.canonical_uri(raw_path).rstrip("/")
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


class IdempotencyRecords:
    """Answers by (public key id, idempotency key), kept for ever like Amazon's (section 7)."""

    def __init__(self) -> None:
        self._stored: dict[tuple[str, str], Stored] = {}

    def replay(self, scope: tuple[str, str], request_fingerprint: str) -> Stored | None:
        """The stored answer for the same request, None for a new key; raises for a different
        request with a used key."""
        previous = self._stored.get(scope)
        if previous is not None and previous.fingerprint != request_fingerprint:
            raise SimulatorError(
                400,
                "DuplicateIdempotencyKey",
                "The idempotency key was already used for a different request",
            )
        return previous

    def remember(self, scope: tuple[str, str], stored: Stored) -> None:
        # Answers of 5xx are not kept, so a retry after a 503 is applied.
        if stored.status < 500:
            self._stored[scope] = stored

    def clear(self) -> None:
        self._stored.clear()
