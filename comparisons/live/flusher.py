"""One progress writer per process: the text so far of every streaming comparison, in batches.

Every ``PLAYGROUND_FLUSH_INTERVAL`` the dirty model slots of *all* local runs and the heartbeat
of each run go to the database: database writes grow with time and models, never with chunks,
and the single database thread is not kept busy by one transaction per comparison. The runs are
written in batches of up to ``BATCH_SLOTS`` slots (one call each: one transaction, one statement
per kind) spread evenly over the interval. The database thread's Python shares the interpreter
with the event loop, and a single call for every slot at once held the loop back long enough to
set the relay's p99.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from channels.db import database_sync_to_async
from django.conf import settings

from comparisons import services
from comparisons.live.run import ComparisonRun, SlotRun

logger = logging.getLogger(__name__)

#: Slots per database call (~125 µs of the database thread's CPU each).
BATCH_SLOTS = 32


def batches(runs: Iterable[ComparisonRun], size: int = BATCH_SLOTS) -> list[list[ComparisonRun]]:
    """``runs`` in order, grouped so that each group holds at most ``size`` slots (a run with
    more slots than that is a group of its own)."""
    out: list[list[ComparisonRun]] = []
    slots = 0
    for run in runs:
        if not out or slots + len(run.slots) > size:
            out.append([])
            slots = 0
        out[-1].append(run)
        slots += len(run.slots)
    return out


class ProgressFlusher:
    """Flushes the runs ``source`` returns, while there are any, on the current event loop."""

    def __init__(self, source: Callable[[], Iterable[ComparisonRun]]) -> None:
        self._source = source
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def wake(self) -> None:
        """Make sure the periodic flush runs on this event loop."""
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.create_task(self._every_interval(), name="progress-flusher")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def flush(self, runs: list[ComparisonRun] | None = None) -> bool:
        """Write the dirty slots and the heartbeats of ``runs`` (all local runs when omitted) now,
        in one database call; False when the database could not be reached."""
        runs = list(self._source()) if runs is None else runs
        if not runs:
            return True
        progress: list[tuple[str, services.ResponseProgress]] = []
        taken: list[SlotRun] = []
        for run in runs:
            for slot in run.slots:
                if slot.dirty:
                    slot.dirty = False
                    progress.append((run.comparison_id, slot.progress()))
                    taken.append(slot)
        try:
            failed = await database_sync_to_async(services.comparison_progress_save)(
                progress=progress, alive=[run.comparison_id for run in runs]
            )
        except services.CONNECTION_ERRORS as exc:
            # Once per outage, not every interval: the next flush tries again.
            if not self._failing:
                logger.warning("Database unreachable, progress kept to save later (%s)", exc)
            self._failing = True
            for slot in taken:
                slot.dirty = True
            await database_sync_to_async(services.connection_drop)()
            return False
        except Exception:
            logger.exception("Could not save the progress of %d comparisons", len(runs))
            for slot in taken:
                slot.dirty = True  # the next flush tries again
            return True
        if self._failing:
            self._failing = False
            logger.warning("Database reachable again, progress saved")
        if failed:
            # Their progress was not applied (logged by the service): keep it to write again.
            unsaved = set(failed)
            for run in runs:
                if run.comparison_id in unsaved:
                    for slot in run.slots:
                        if slot in taken:
                            slot.dirty = True
        return True

    async def _every_interval(self) -> None:
        while True:
            groups = batches(self._source())
            if not groups:
                await asyncio.sleep(settings.PLAYGROUND_FLUSH_INTERVAL)
                continue
            pause = settings.PLAYGROUND_FLUSH_INTERVAL / len(groups)
            for group in groups:
                await asyncio.sleep(pause)
                # A run that ended meanwhile has had its final save: stale progress must not
                # follow it.
                live = {id(run) for run in self._source()}
                if not await self.flush([run for run in group if id(run) in live]):
                    break  # unreachable: the next interval tries every run again
