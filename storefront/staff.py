"""Staff sign-in for the merchant console: one shared password, compared in constant time, wrong
guesses slowed down for every instance at once (the counters live in the database); and what
every staff action shares (request ids, amounts, results)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from storefront.db.audit import AuditEntry, StaffAudit
from storefront.db.throttles import Limit, Throttles

__all__ = [
    "ADDRESS_LIMIT",
    "GLOBAL_LIMIT",
    "ActionResult",
    "Outcome",
    "SignIn",
    "SignInResult",
    "StaffSignIn",
    "money",
    "new_request_id",
    "parse_amount",
    "valid_request_id",
]

ACTOR = "staff"  # one shared password: every signed-in person is "staff" in the audit trail

# Per client address: 5 free wrong guesses in 15 minutes, then 30 s, 60 s, ... up to 15 minutes.
ADDRESS_LIMIT = Limit(
    window=timedelta(minutes=15),
    limit=5,
    block=timedelta(seconds=30),
    max_block=timedelta(minutes=15),
)
# All addresses together (a spread-out guesser): 50 in 15 minutes, then 10 s growing to 5 min.
GLOBAL_LIMIT = Limit(
    window=timedelta(minutes=15),
    limit=50,
    block=timedelta(seconds=10),
    max_block=timedelta(minutes=5),
)


class SignIn(enum.Enum):
    OK = "ok"
    WRONG = "wrong-password"
    LOCKED = "locked"  # too many wrong guesses: not even checked


@dataclass(frozen=True)
class SignInResult:
    kind: SignIn
    retry_after: int = 0  # seconds, when LOCKED


def _digest(value: str) -> bytes:
    # Equal-length inputs for compare_digest, so the password's length is not timed either.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class StaffSignIn:
    """Checks the console password; thread-safe, one per app."""

    def __init__(
        self,
        password: str,
        throttles: Throttles,
        audit: StaffAudit,
        *,
        clock: Callable[[], datetime],
        address_limit: Limit = ADDRESS_LIMIT,
        global_limit: Limit = GLOBAL_LIMIT,
    ) -> None:
        self._expected = _digest(password)
        self.throttles = throttles
        self.audit = audit
        self.clock = clock
        self.address_limit = address_limit
        self.global_limit = global_limit

    def fingerprint(self, secret: bytes) -> str:
        """A value that changes with the password: staff sessions carry it, so changing
        ADMIN_PASSWORD signs everyone out."""
        return hmac.new(secret, self._expected, hashlib.sha256).hexdigest()[:16]

    def sign_in(self, password: str, client_address: str) -> SignInResult:
        now = self.clock()
        address_key = f"staff-sign-in:address:{client_address}"
        global_key = "staff-sign-in:all"
        blocked = [
            until
            for until in (
                self.throttles.blocked_until(address_key, now),
                self.throttles.blocked_until(global_key, now),
            )
            if until is not None
        ]
        if blocked:
            self._audit(now, "locked")
            wait = max(blocked) - now
            return SignInResult(SignIn.LOCKED, retry_after=max(1, int(wait.total_seconds()) + 1))
        if hmac.compare_digest(_digest(password), self._expected):
            self.throttles.clear(address_key)
            self._audit(now, "signed-in")
            return SignInResult(SignIn.OK)
        self.throttles.hit(address_key, self.address_limit, now=now)
        self.throttles.hit(global_key, self.global_limit, now=now)
        self._audit(now, "wrong-password")
        return SignInResult(SignIn.WRONG)

    def _audit(self, now: datetime, outcome: str) -> None:
        self.audit.record(
            AuditEntry(
                at=now,
                actor=ACTOR,
                action="sign_in",
                order_reference=None,
                request_id=None,
                outcome=outcome,
            )
        )


# -- what every staff action shares ------------------------------------------------------------

# A form's request_id (made when the page was rendered) or the CLI's --request-id.
REQUEST_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")
_MAX_AMOUNT = Decimal("9999999999.99")  # what orders.amount (NUMERIC(12, 2)) can hold


def new_request_id() -> str:
    """A fresh request id for one rendered form: 128 random bits."""
    return secrets.token_urlsafe(16)


def valid_request_id(value: str | None) -> bool:
    return value is not None and REQUEST_ID_PATTERN.match(value) is not None


def parse_amount(text: str | None) -> Decimal | None:
    """A positive amount with at most two decimals ("12", "12.5", "12.50"); None otherwise."""
    if text is None or not re.fullmatch(r"\s*\d{1,10}(\.\d{1,2})?\s*", text):
        return None
    amount = Decimal(text.strip()).quantize(Decimal("0.01"))
    return amount if Decimal(0) < amount <= _MAX_AMOUNT else None


class Outcome(enum.Enum):
    DONE = "done"  # Amazon did it
    STARTED = "started"  # Amazon accepted it and settles it later (a refund, a slow capture)
    UNKNOWN = "unknown"  # no answer yet: reconciled later, never reported as failed
    REFUSED = "refused"  # nothing changed; `message` says why in plain words


@dataclass(frozen=True)
class ActionResult:
    outcome: Outcome
    message: str  # for staff, in plain words
    reason: str  # short, for the audit trail, logs and tests
    reference: str | None = None  # the order it is about (a new one for a charge)

    @property
    def refused(self) -> bool:
        return self.outcome is Outcome.REFUSED


def money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount.quantize(Decimal('0.01'))}"
