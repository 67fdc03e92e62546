"""The health check's database ping: answered within a budget, with one ping in flight at most.

A frozen database would otherwise hold every `/healthz` request for as long as the engine's
own limits allow, and a load balancer's checks would pile up on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["HealthProbe"]


class _Ping:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class HealthProbe:
    """Runs `ping` in a background thread and waits for it at most `budget_seconds`.

    A check that finds a ping already running waits for that one (within its own budget)
    instead of starting another; a ping that outlives the budget answers False, and keeps
    running until the engine's own limits end it.
    """

    def __init__(self, ping: Callable[[], bool], *, budget_seconds: float = 1.5) -> None:
        self._ping = ping
        self._budget = budget_seconds
        self._lock = threading.Lock()
        self._in_flight: _Ping | None = None

    def check(self) -> bool:
        started = time.monotonic()
        with self._lock:
            current = self._in_flight
            if current is None:
                current = self._in_flight = _Ping()
                threading.Thread(
                    target=self._run, args=(current,), name="health-ping", daemon=True
                ).start()
        remaining = self._budget - (time.monotonic() - started)
        return current.done.wait(max(0.0, remaining)) and current.ok

    def _run(self, current: _Ping) -> None:
        try:
            current.ok = self._ping()
        finally:
            with self._lock:
                self._in_flight = None
            current.done.set()
