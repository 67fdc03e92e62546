"""Counters shared by every instance, per key: how often something happened in a window, and
until when that key is blocked (wrong staff passwords, costly anonymous requests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, select, update

from storefront.db.engine import Repository
from storefront.db.schema import throttles

__all__ = ["Hit", "Limit", "Throttles"]


@dataclass(frozen=True)
class Limit:
    """`limit` events per `window` are free; each one past it blocks the key for `block`,
    doubled for every further event in the same window, never longer than `max_block`."""

    window: timedelta
    limit: int
    block: timedelta
    max_block: timedelta

    def block_for(self, count: int) -> timedelta:
        over = max(count - self.limit - 1, 0)
        grown: timedelta = self.block * (2 ** min(over, 30))
        return min(grown, self.max_block)


@dataclass(frozen=True)
class Hit:
    count: int  # events in the current window, this one included
    blocked_until: datetime | None  # set once the count passed the limit

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


class Throttles(Repository):
    """Reads and writes of `throttles`; every change is one atomic statement per key."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        # Built once: every return asks it (constructing a statement costs more than running it).
        t = throttles.c
        self._blocked_until = select(t.blocked_until).where(t.throttle_key == bindparam("p_key"))

    def blocked_until(self, key: str, now: datetime) -> datetime | None:
        """Until when `key` is blocked, or None when it is not blocked now."""
        with self.engine.connect() as conn:
            until = conn.execute(self._blocked_until, {"p_key": key}).scalar_one_or_none()
        return until if until is not None and until > now else None

    def hit(self, key: str, limit: Limit, *, now: datetime) -> Hit:
        """Count one event for `key`; past the limit, block it (longer each time).

        An upsert, so instances racing on the same key each count exactly once; a window that
        has run out starts again at 1.
        """
        t = throttles.c
        expired = t.window_started_at <= now - limit.window
        statement = (
            self._insert(throttles)
            .values(throttle_key=key, count=1, window_started_at=now, blocked_until=None)
            .on_conflict_do_update(
                index_elements=["throttle_key"],
                set_={
                    "count": case((expired, 1), else_=t.count + 1),
                    "window_started_at": case((expired, now), else_=t.window_started_at),
                },
            )
            .returning(t.count, t.blocked_until)
        )
        with self._tx() as conn:
            row = conn.execute(statement).mappings().one()
            count, until = int(row["count"]), row["blocked_until"]
            if count > limit.limit:
                until = now + limit.block_for(count)
                conn.execute(
                    update(throttles).where(t.throttle_key == key).values(blocked_until=until)
                )
        return Hit(count=count, blocked_until=until)

    def purge(self, *, window_before: datetime, now: datetime) -> int:
        """Forget every key whose window started before `window_before` and that is not
        blocked now: its next event would start a new window at 1 anyway, so nothing a limit
        decides changes, and one row per address that ever came does not pile up for ever."""
        t = throttles.c
        with self._tx() as conn:
            result = conn.execute(
                delete(throttles)
                .where(t.window_started_at < window_before)
                .where(t.blocked_until.is_(None) | (t.blocked_until <= now))
            )
        return int(result.rowcount or 0)

    def clear(self, key: str) -> None:
        """Forget `key` (e.g. after a right password from that address)."""
        with self._tx() as conn:
            conn.execute(delete(throttles).where(throttles.c.throttle_key == key))
