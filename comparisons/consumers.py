"""The ``/ws`` consumer: starts, cancels and watches comparisons for the signed-in user.

It stays thin: frames are validated by :mod:`comparisons.frames`, comparisons are created by
:mod:`comparisons.launch` and run by :mod:`comparisons.runner`, independently of this socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from accounts.consumers import AuthenticatedJsonConsumer
from comparisons import selectors, services
from comparisons.frames import ModelRef, SessionRef, StartComparison, parse
from comparisons.groups import WatchEvent, run_group, watch_group
from comparisons.launch import comparison_launch, session_created_payload
from comparisons.maintenance import sweep_stale_comparisons
from comparisons.models import Comparison, ComparisonStatus
from comparisons.runner import ComparisonRun, runs

REMOTE_WATCH_TIMEOUT_SECONDS = 3.0


def _db_snapshot(comparison: Comparison) -> dict[str, Any]:
    models = []
    for row in comparison.responses.all():
        entry: dict[str, Any] = {
            "key": row.key,
            "provider": row.provider,
            "modelName": row.model_name,
            "status": row.status,
            "content": row.content,
            "nextIndex": row.chunk_count,
        }
        if row.metrics is not None:
            entry["metrics"] = row.metrics
        if row.error:
            entry["error"] = row.error
        models.append(entry)
    return {"sessionId": comparison.id, "status": comparison.status, "models": models}


class ComparisonConsumer(AuthenticatedJsonConsumer):
    """One browser tab (or CLI) connected to ``/ws``."""

    async def connect(self) -> None:
        self.started: set[str] = set()
        self.watching: set[str] = set()
        self.pending_watch: dict[str, asyncio.TimerHandle] = {}
        #: Remote runs that answered this socket's watch request.
        self.answered: set[str] = set()
        #: Recorded replays whose opening snapshot this socket forwarded.
        self.replays: set[str] = set()
        await super().connect()

    async def disconnect(self, code: int) -> None:
        # Runs keep going without this socket; it only stops listening.
        name = self.subscriber_name
        for comparison_id in self.started | self.watching:
            run = runs.get(comparison_id)
            if run is not None:
                run.unsubscribe(name)
            elif self.channel_layer is not None:
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_send(
                        run_group(comparison_id),
                        {
                            "type": "watch.stop",
                            "session": comparison_id,
                            "reply": self.channel_name,
                            "user_id": self.user_id,
                        },
                    )
            if self.channel_layer is not None:
                with contextlib.suppress(Exception):
                    await self.channel_layer.group_discard(
                        watch_group(comparison_id), self.channel_name
                    )
        for handle in self.pending_watch.values():
            handle.cancel()
        await super().disconnect(code)

    @property
    def subscriber_name(self) -> str:
        return self.channel_name or f"socket-{id(self)}"

    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def send_texts(self, texts: list[str]) -> None:
        for text in texts:
            await self.send(text_data=text)

    # --- client events -----------------------------------------------------------------------
    async def on_startComparison(self, data: Any) -> None:
        request_id = data.get("requestId") if isinstance(data, dict) else None
        request_id = request_id if isinstance(request_id, str) else None
        try:
            frame = parse(StartComparison, "startComparison", data)
            slots = services.comparison_plan(choices=frame.choices())
            run = await comparison_launch(
                user_id=self.owner,
                prompt=frame.prompt,
                system=frame.system or "",
                slots=slots,
            )
        except (ValueError, services.LimitExceeded) as exc:
            await self.send_error(str(exc), request_id=request_id)
            return
        self.started.add(run.comparison_id)
        await self.send_event("sessionCreated", session_created_payload(run, frame.requestId))
        await run.release(self.subscriber_name, self.send_text)

    async def on_cancelComparison(self, data: Any) -> None:
        try:
            frame = parse(SessionRef, "cancelComparison", data)
        except ValueError as exc:
            await self.send_error(str(exc))
            return
        await self._cancel(frame.sessionId, None)

    async def on_cancelModel(self, data: Any) -> None:
        try:
            frame = parse(ModelRef, "cancelModel", data)
        except ValueError as exc:
            await self.send_error(str(exc))
            return
        await self._cancel(frame.sessionId, frame.model)

    async def on_watchSession(self, data: Any) -> None:
        try:
            frame = parse(SessionRef, "watchSession", data)
        except ValueError as exc:
            await self.send_error(str(exc))
            return
        comparison_id: str = frame.sessionId
        run = self._owned_run(comparison_id)
        if run is not None:
            self.watching.add(comparison_id)
            run.watch(self.subscriber_name, self.send_texts)
            return
        comparison = await database_sync_to_async(selectors.comparison_get)(
            user_id=self.user_id, comparison_id=comparison_id
        )
        if comparison is None:
            await self.send_error(f"Session {comparison_id} not found")
            return
        if self.channel_layer is not None:
            # Recorded replays and remote runs reach this socket through the layer.
            self.watching.add(comparison_id)
            await self.channel_layer.group_add(watch_group(comparison_id), self.channel_name)
        if comparison.status != ComparisonStatus.STREAMING or self.channel_layer is None:
            await self._send_saved(comparison)
            return
        # Running in another server process: ask it for a snapshot + live events.
        loop = asyncio.get_running_loop()
        self.pending_watch[comparison_id] = loop.call_later(
            REMOTE_WATCH_TIMEOUT_SECONDS,
            lambda: asyncio.ensure_future(self._remote_watch_timed_out(comparison_id)),
        )
        await self.channel_layer.group_send(
            run_group(comparison_id),
            {
                "type": "watch.request",
                "session": comparison_id,
                "reply": self.channel_name,
                "user_id": self.user_id,
            },
        )

    # --- channel-layer messages ----------------------------------------------------------------
    async def watch_event(self, message: dict[str, Any]) -> None:
        """Events of a watched comparison from another process, or of a recorded replay."""
        event = WatchEvent.from_message(message)
        if event.replay is not None:
            if event.opens:
                self.replays.add(event.replay)
            elif event.replay not in self.replays:
                return  # joined mid-replay: without its snapshot, its chunks would not add up
            await self.send_texts(event.texts)
            return
        session = event.session
        handle = self.pending_watch.pop(session, None)
        if handle is not None:
            handle.cancel()
            self.answered.add(session)
        elif session not in self.answered:
            return  # too late: the saved state and its end marker were sent instead
        await self.send_texts(event.texts)

    # --- helpers -------------------------------------------------------------------------------
    def _owned_run(self, comparison_id: str) -> ComparisonRun | None:
        run = runs.get(comparison_id)
        return run if run is not None and run.user_id == self.user_id else None

    async def _cancel(self, comparison_id: str, model: str | None) -> None:
        run = self._owned_run(comparison_id)
        if run is not None:
            if model is None:
                run.cancel()
            elif (slot := run.slot(model)) is not None:
                run.cancel_slot(slot)
            else:
                await self.send_error(f"Session {comparison_id} has no model '{model}'")
            return
        comparison = await database_sync_to_async(selectors.comparison_get)(
            user_id=self.user_id, comparison_id=comparison_id
        )
        if comparison is None:
            await self.send_error(f"Session {comparison_id} not found")
        elif comparison.status != ComparisonStatus.STREAMING:
            await self.send_error(f"Session {comparison_id} is not running")
        elif self.channel_layer is not None:
            await self.channel_layer.group_send(
                run_group(comparison_id),
                {
                    "type": "run.cancel",
                    "session": comparison_id,
                    "user_id": self.user_id,
                    "model": model,
                },
            )

    async def _remote_watch_timed_out(self, comparison_id: str) -> None:
        """No answer from the running process yet: keep waiting while it is alive (a busy
        process answers late, and a second snapshot would break chunk accounting); otherwise
        the saved state is the answer (the run ended, or its process died)."""
        if comparison_id not in self.pending_watch:
            return
        comparison = await database_sync_to_async(selectors.comparison_get)(
            user_id=self.user_id, comparison_id=comparison_id
        )
        if comparison_id not in self.pending_watch:
            return  # answered meanwhile
        if comparison is not None and _alive(comparison):
            self.pending_watch[comparison_id] = asyncio.get_running_loop().call_later(
                REMOTE_WATCH_TIMEOUT_SECONDS,
                lambda: asyncio.ensure_future(self._remote_watch_timed_out(comparison_id)),
            )
            return
        del self.pending_watch[comparison_id]
        if comparison is not None and comparison.status == ComparisonStatus.STREAMING:
            # Its process died: mark it interrupted now (as the next sweep would), so this
            # watcher gets a final state and its end marker rather than waiting for neither.
            await database_sync_to_async(sweep_stale_comparisons)()
            comparison = await database_sync_to_async(selectors.comparison_get)(
                user_id=self.user_id, comparison_id=comparison_id
            )
        if comparison is not None:
            await self._send_saved(comparison)

    async def _send_saved(self, comparison: Comparison) -> None:
        """The saved state as ``sessionSnapshot``; a finished comparison's is followed by its
        one ``comparisonComplete``, as from a run, so every watcher gets one end marker."""
        await self.send_event("sessionSnapshot", _db_snapshot(comparison))
        if comparison.status != ComparisonStatus.STREAMING:
            await self.send_event(
                "comparisonComplete", {"sessionId": comparison.id, "status": comparison.status}
            )


def _alive(comparison: Comparison) -> bool:
    """Still streaming, and its process flushed (its heartbeat) recently."""
    if comparison.status != ComparisonStatus.STREAMING or comparison.heartbeat_at is None:
        return False
    age = (timezone.now() - comparison.heartbeat_at).total_seconds()
    return age < settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS
