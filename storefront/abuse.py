"""Who may make the return spend an Amazon call: per-client limits shared by every instance
(the `throttles` table), so no visitor can spend the merchant's Amazon quota on junk."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from storefront.db.throttles import Limit, Throttles

__all__ = ["Admission", "ReturnLimiter", "ReturnLimits", "Verdict", "client_key"]


def _limit() -> Limit:
    # 10 a quarter of an hour per client, then blocked 1 minute, doubling up to 1 hour.
    return Limit(
        window=timedelta(minutes=15),
        limit=10,
        block=timedelta(minutes=1),
        max_block=timedelta(hours=1),
    )


@dataclass(frozen=True)
class ReturnLimits:
    """What one client may cost. See README "Limits on the return URL"."""

    # Distinct session ids one pending checkout accepts that Amazon has not confirmed as its
    # own (a confirmed one, e.g. a declined payment the buyer retries, never counts).
    sessions_per_checkout: int = 3
    # The first ones on a pending checkout the buyer's own cookie made are not counted against
    # the client: someone else's flood from the same address cannot throttle them.
    owner_free_sessions: int = 2
    # Unknown refs, and new session ids that are not the cookie owner's first ones.
    stranger: Limit = field(default_factory=_limit)
    # Cookie owners' free session ids that turned out not to be theirs: past this, a client
    # (one that keeps its cookies to look like a buyer) loses the free ones too.
    owner_strikes: Limit = field(default_factory=_limit)


class Verdict(enum.Enum):
    ALLOW = "allow"
    TOO_MANY_SESSIONS = "too-many-sessions"  # the pending checkout's share is used up
    THROTTLED = "throttled"  # this client's share is used up


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    free: bool  # allowed as the cookie owner's own: a failure counts as a strike

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


class ReturnLimiter:
    """Counts per client address; every count is one atomic upsert in the shared database."""

    def __init__(self, throttles: Throttles, limits: ReturnLimits | None = None) -> None:
        self.throttles = throttles
        self.limits = limits or ReturnLimits()

    def unknown_reference(self, client: str | None, *, now: datetime) -> None:
        """A `ref` we never issued: costs no Amazon call, but counts as a stranger's try."""
        self.throttles.hit(self._key("stranger", client), self.limits.stranger, now=now)

    def new_session(
        self, client: str | None, *, owned: bool, unconfirmed: int, now: datetime
    ) -> Admission:
        """May a session id not yet claimed for this pending checkout cost a Get?

        `owned`: the buyer's cookie made the pending checkout; `unconfirmed`: how many session
        ids it already has that Amazon has not confirmed as its own.
        """
        limits = self.limits
        if unconfirmed >= limits.sessions_per_checkout:
            return Admission(Verdict.TOO_MANY_SESSIONS, free=False)
        if (
            owned
            and unconfirmed < limits.owner_free_sessions
            and self.throttles.blocked_until(self._key("owner", client), now) is None
        ):
            return Admission(Verdict.ALLOW, free=True)
        hit = self.throttles.hit(self._key("stranger", client), limits.stranger, now=now)
        if hit.blocked(now):
            return Admission(Verdict.THROTTLED, free=False)
        return Admission(Verdict.ALLOW, free=False)

    def strike(self, client: str | None, *, now: datetime) -> None:
        """A cookie owner's free session id was not a payment of theirs."""
        self.throttles.hit(self._key("owner", client), self.limits.owner_strikes, now=now)

    @staticmethod
    def _key(kind: str, client: str | None) -> str:
        return f"return:{kind}:{client_key(client)}"


def client_key(client: str | None) -> str:
    """The unit a limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's network, whose
    addresses they can change at will). Without an address (not over HTTP) callers share one."""
    if not client:
        return "-"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
