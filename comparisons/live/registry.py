"""The comparisons running in this process, and their reachability from other processes.

:class:`LocalRuns` keeps the runs by id (and their progress flusher). :class:`RunControl` makes a
run reachable by watchers and cancels from other server processes: one channel per process (and
event loop) joins the group ``run.<id>`` of each local run; one task receives on it while any run
is local and hands each typed control message to its run. Runs join *before* their
``sessionCreated`` is sent, so a watcher can never ask an empty group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.layers import get_channel_layer

from comparisons.live.flusher import ProgressFlusher
from comparisons.live.layer import LayerInbox, LayerOutage
from comparisons.live.messages import (
    RunCancel,
    RunReveal,
    WatchRequest,
    WatchStop,
    control_from_message,
    run_group,
)
from comparisons.live.run import ComparisonRun
from comparisons.live.subscribers import RemoteWatcher, remote_name

logger = logging.getLogger(__name__)


class LocalRuns:
    """The comparisons running in this process, by id."""

    def __init__(self) -> None:
        self._runs: dict[str, ComparisonRun] = {}
        self.flusher = ProgressFlusher(self.all)

    def get(self, comparison_id: str) -> ComparisonRun | None:
        return self._runs.get(comparison_id)

    def all(self) -> list[ComparisonRun]:
        return list(self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    async def cancel_all(self) -> None:
        """Cancel every run of this process and wait until each has saved its state."""
        pending = list(self._runs.values())
        for run in pending:
            run.cancel()
        await asyncio.gather(*(run.done.wait() for run in pending))

    def add(self, run: ComparisonRun) -> asyncio.Task[None]:
        """Register ``run`` and start it; while any run is registered, their progress is
        flushed (:mod:`comparisons.live.flusher`)."""
        self._runs[run.comparison_id] = run
        task = run.start()
        task.add_done_callback(lambda _: self._remove(run))
        self.flusher.wake()
        return task

    def _remove(self, run: ComparisonRun) -> None:
        if self._runs.get(run.comparison_id) is run:  # not a later turn's run
            del self._runs[run.comparison_id]
        if not self._runs:
            self.flusher.stop()


class RunControl:
    """Control messages from other server processes, for every run of this process."""

    def __init__(self) -> None:
        self._runs: dict[str, ComparisonRun] = {}
        self._channel: str | None = None
        self._key: tuple[Any, Any] | None = None
        self._inbox: LayerInbox | None = None
        self._joining: set[asyncio.Task[None]] = set()

    async def join(self, run: ComparisonRun) -> None:
        """Make ``run`` reachable by watchers and cancels from other processes."""
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await self._listening(layer)
        self._runs[run.comparison_id] = run
        try:
            await layer.group_add(run_group(run.comparison_id), channel)
        except Exception as exc:
            # The run runs locally all the same; it joins once the layer is back.
            logger.warning(
                "Comparison %s not reachable from other processes yet (%s)",
                run.comparison_id,
                type(exc).__name__,
            )
            task = asyncio.create_task(self._join_later(layer, run, channel))
            self._joining.add(task)
            task.add_done_callback(self._joining.discard)

    async def _join_later(self, layer: Any, run: ComparisonRun, channel: str) -> None:
        outage = LayerOutage(f"comparison {run.comparison_id}")
        while self._runs.get(run.comparison_id) is run and self._channel == channel:
            try:
                await layer.group_add(run_group(run.comparison_id), channel)
            except Exception as exc:
                await outage.failed(exc)
                continue
            outage.succeeded()
            if self._runs.get(run.comparison_id) is not run:  # it ended meanwhile
                with contextlib.suppress(Exception):
                    await layer.group_discard(run_group(run.comparison_id), channel)
            return

    async def _rejoin(self, layer: Any, channel: str) -> None:
        """After a layer outage: every local run's group again (a restarted Redis forgot them)."""
        for comparison_id in list(self._runs):
            await layer.group_add(run_group(comparison_id), channel)

    async def leave(self, run: ComparisonRun) -> None:
        """Stop routing messages to ``run``; the listener stops with the process's last run."""
        if self._runs.get(run.comparison_id) is not run or self._channel is None:
            return  # not joined, or a later turn's run took its place
        del self._runs[run.comparison_id]
        layer = get_channel_layer()
        if layer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    layer.group_discard(run_group(run.comparison_id), self._channel)
                )
        if not self._runs and self._inbox is not None:
            inbox, self._inbox, self._channel, self._key = self._inbox, None, None, None
            await inbox.stop()

    async def _listening(self, layer: Any) -> str:
        key = (layer, asyncio.get_running_loop())
        if self._channel is None or self._key != key:
            channel = await layer.new_channel()
            if self._key != key:  # not set meanwhile by a concurrent join
                self._channel, self._key = channel, key
                self._runs.clear()
                self._inbox = LayerInbox(
                    layer,
                    channel,
                    handle=lambda message: self._on_message(layer, message),
                    what="run control",
                    rejoin=lambda: self._rejoin(layer, channel),
                )
        assert self._channel is not None
        return self._channel

    async def _on_message(self, layer: Any, raw: dict[str, Any]) -> None:
        message = control_from_message(raw)
        if message is None:
            return
        run = self._runs.get(message.session)
        if run is None or message.user_id != run.user_id:
            return
        if isinstance(message, WatchRequest):
            if message.reply:
                run.watch(RemoteWatcher(layer, session=run.comparison_id, reply=message.reply))
        elif isinstance(message, WatchStop):
            run.unsubscribe(remote_name(message.reply))
        elif isinstance(message, RunCancel):
            if message.model is None:
                run.cancel()
            elif (slot := run.slot(message.model)) is not None:
                run.cancel_slot(slot)
        elif isinstance(message, RunReveal):
            await run.reveal(skip=remote_name(message.reply) if message.reply else None)
