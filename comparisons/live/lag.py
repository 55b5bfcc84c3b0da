"""How late this process's event loop runs what is due: the admission signal of a saturated
process (``PLAYGROUND_MAX_LOOP_LAG_SECONDS``).

One timer task per process, ``INTERVAL`` apart, measures its own lateness and keeps a time-
weighted moving average (time constant ``TAU``): a lone garbage-collection pause barely moves it,
sustained saturation does. Nothing runs per chunk. The task runs only while ``active()`` says
the process has work (streams open or being admitted), and forgets its lag when it stops.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

#: Seconds between two measurements.
INTERVAL = 0.1
#: Seconds: the smoothing's time constant.
TAU = 1.0


class LoopLag:
    """The event loop's recent lateness in seconds (:meth:`seconds`), measured while
    ``active()``."""

    def __init__(self, active: Callable[[], bool]) -> None:
        self._active = active
        self._task: asyncio.Task[None] | None = None
        self._smoothed = 0.0
        #: Loop time the pending measurement is due at (None: not measuring).
        self._due: float | None = None

    def wake(self) -> None:
        """Make sure the measurement runs on this event loop."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._smoothed, self._due = 0.0, None
            self._task = loop.create_task(self._measure(), name="loop-lag")

    def seconds(self) -> float:
        """The smoothed lag, or how overdue the pending measurement is if that is more: a loop
        busy right now has not yet run the timer that would tell."""
        due = self._due
        if due is None:
            return self._smoothed
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return self._smoothed
        return max(self._smoothed, now - due)

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._active():
                start = loop.time()
                self._due = start + INTERVAL
                await asyncio.sleep(INTERVAL)
                now = loop.time()
                late = max(0.0, now - self._due)
                weight = 1.0 - math.exp(-(now - start) / TAU)
                self._smoothed += weight * (late - self._smoothed)
        finally:
            if self._task is asyncio.current_task():  # not a task of a closed loop
                self._smoothed, self._due = 0.0, None
