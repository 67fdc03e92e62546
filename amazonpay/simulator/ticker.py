"""The simulator's timer thread: applies due time-driven changes (expiries, pending
authorizations, refunds) without waiting for a request, so IPNs go out on time."""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amazonpay.simulator.app import Simulator

TICK_SECONDS = 1.0


def start_ticker(simulator: Simulator) -> None:
    """Tick every second on a daemon thread that holds only a weak reference: the thread ends
    once the simulator is garbage."""
    ref = weakref.ref(simulator)

    def run() -> None:
        while True:
            time.sleep(TICK_SECONDS)
            sim = ref()
            if sim is None:
                return
            sim.transact(lambda _store: None)
            del sim

    threading.Thread(target=run, name="amazon-pay-simulator-clock", daemon=True).start()
