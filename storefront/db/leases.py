"""Keeps alive the claim leases this process holds, so a short lease never overtakes a slow winner.

A claim's lease is short (about 20 s) so that a crashed worker's claim is taken over soon; the
Amazon calls behind it can take longer (about 17 s each with retries), so while a holder works,
one background thread per process renews its lease every `every_seconds`. A holder whose work
ends in an error lets its lease go, so the buyer's next refresh takes the claim over at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from storefront.db.ledger import ClaimLedger

__all__ = ["LeaseKeeper"]

logger = logging.getLogger(__name__)

_Held = tuple[str, str]  # (checkout session id, lease owner)


class LeaseKeeper:
    """`with keeper.holding(session_id, owner): ...` renews that lease until the block ends.

    The thread starts with the first lease held and ends after an interval with none, so an
    idle process (or a forked one) runs no thread. When the database does not answer, renewing
    is tried again after `retry_seconds`; leases to let go are retried until they would have
    expired anyway.
    """

    def __init__(
        self,
        ledger: ClaimLedger,
        *,
        lease: timedelta,
        clock: Callable[[], datetime],
        every_seconds: float | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self._ledger = ledger
        self._lease = lease
        self._clock = clock
        self._every = every_seconds if every_seconds is not None else lease.total_seconds() / 4
        self._retry = min(retry_seconds, self._every)
        self._wake = threading.Condition()
        self._held: set[_Held] = set()
        self._to_let_go: dict[_Held, datetime] = {}  # -> when the lease runs out by itself
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, checkout_session_id: str, owner: str) -> Iterator[None]:
        key = (checkout_session_id, owner)
        with self._wake:
            self._held.add(key)
            self._start()
        succeeded = False
        try:
            yield
            succeeded = True
        finally:
            with self._wake:
                self._held.discard(key)
            if not succeeded:
                self._let_go(key)

    def _let_go(self, key: _Held) -> None:
        try:
            self._ledger.let_go(*key, now=self._clock())
        except SQLAlchemyError:
            # The database is away (likely why the holder failed): let go once it is back,
            # unless the lease has run out by then anyway.
            with self._wake:
                self._to_let_go[key] = self._clock() + self._lease
                self._start()

    def _start(self) -> None:
        """Start the thread unless it runs (the caller holds `_wake`)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="claim-leases", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        pause = self._every
        while True:
            with self._wake:
                self._wake.wait(pause)
                held = sorted(self._held)
                now = self._clock()
                letting_go = [key for key, until in self._to_let_go.items() if until > now]
                self._to_let_go = {key: self._to_let_go[key] for key in letting_go}
                if not held and not letting_go:
                    self._thread = None
                    return
            pause = self._every if self._beat(held, letting_go) else self._retry

    def _beat(self, held: list[_Held], letting_go: list[_Held]) -> bool:
        """Renew and let go; False when the database did not answer."""
        try:
            self._ledger.renew(held, now=self._clock(), lease=self._lease)
            for key in letting_go:
                self._ledger.let_go(*key, now=self._clock())
                with self._wake:
                    self._to_let_go.pop(key, None)
        except SQLAlchemyError as exc:
            reason = type(exc).__name__
            logger.warning("claim leases not renewed: database unavailable (%s)", reason)
            return False
        return True
