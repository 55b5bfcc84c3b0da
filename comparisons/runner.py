"""Running comparisons: one task per model slot, events fanned out to subscribers.

A :class:`ComparisonRun` lives in the process that started it, independent of any socket: the
socket that started it is just its first subscriber, so closing that socket never stops the run.
Each relayed chunk is encoded once (a precomputed frame prefix + the JSON-escaped text) and sent
once per subscriber; text reaches the database in batches, one per ``PLAYGROUND_FLUSH_INTERVAL``
for all the runs of the process (:mod:`comparisons.flusher`), never per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from comparisons import services
from comparisons.flusher import ProgressFlusher
from comparisons.groups import WatchEvent, run_group
from comparisons.models import ComparisonStatus, ResponseStatus
from providers.base import BaseProvider
from providers.types import ProviderError, StreamEnd, StreamRequest

logger = logging.getLogger(__name__)

Subscriber = Callable[[str], Awaitable[None]]
#: Receives every frame queued since its last call, in order (one channel-layer message for many).
BatchSubscriber = Callable[[list[str]], Awaitable[None]]

_dumps = json.dumps


def encode_event(event: str, data: dict[str, Any]) -> str:
    """One server -> client frame: ``{"event": ..., "data": ...}`` as compact JSON."""
    return _dumps({"event": event, "data": data}, separators=(",", ":"))


@dataclass(eq=False)
class SlotRun:
    """One model slot while it streams."""

    key: str
    provider: BaseProvider
    request: StreamRequest
    status: str = ResponseStatus.PENDING
    chunks: list[str] = field(default_factory=list)
    timeline: list[list[float]] = field(default_factory=list)
    error: str = ""
    finish_reason: str = ""
    metrics: dict[str, Any] | None = None
    started_at: Any = None
    finished_at: Any = None
    dirty: bool = False
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def content(self) -> str:
        return "".join(self.chunks)

    @property
    def finished(self) -> bool:
        return self.status in (
            ResponseStatus.COMPLETE,
            ResponseStatus.ERROR,
            ResponseStatus.CANCELLED,
        )

    def progress(self) -> services.ResponseProgress:
        metrics = self.metrics or {}
        return services.ResponseProgress(
            key=self.key,
            status=self.status,
            content=self.content,
            chunk_count=len(self.chunks),
            timeline=list(self.timeline),
            error=self.error,
            finish_reason=self.finish_reason,
            duration_ms=metrics.get("durationInMilliseconds"),
            time_to_first_token_ms=metrics.get("timeToFirstTokenInMilliseconds"),
            input_tokens=metrics.get("inputTokens"),
            output_tokens=metrics.get("outputTokens"),
            total_tokens=metrics.get("tokensUsed"),
            tokens_per_second=metrics.get("tokensPerSecond"),
            cached_input_tokens=metrics.get("cachedInputTokens"),
            reasoning_tokens=metrics.get("reasoningTokens"),
            estimated_cost=metrics.get("estimatedCost"),
            price_version=metrics.get("priceVersion") or "",
            response_model=metrics.get("responseModel") or "",
            started_at=self.started_at,
            finished_at=self.finished_at,
        )

    def snapshot(self) -> dict[str, Any]:
        """This slot as a ``sessionSnapshot`` entry (content so far and the next chunk index)."""
        entry: dict[str, Any] = {
            "key": self.key,
            "provider": self.provider.alias,
            "modelName": self.request.model,
            "status": self.status,
            "content": self.content,
            "nextIndex": len(self.chunks),
        }
        if self.metrics is not None:
            entry["metrics"] = self.metrics
        if self.error:
            entry["error"] = self.error
        return entry


class QueuedSubscriber:
    """A watcher fed through its own queue, so the run never waits on it and order is kept.

    The snapshot is queued first, then every later event, and one task sends them in order:
    snapshot + events contain every chunk exactly once. Frames that queued up while the previous
    send was in flight go out together in one batch (one channel-layer message for a remote
    watcher), so a slow hop coalesces instead of falling behind.
    """

    def __init__(self, target: BatchSubscriber, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain(target))

    async def __call__(self, text: str) -> None:
        self.queue.put_nowait(text)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def _drain(self, target: BatchSubscriber) -> None:
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            texts = [text for text in batch if text is not None]
            if texts:
                try:
                    await target(texts)
                except Exception as exc:
                    logger.warning("Watcher %s dropped: %r", self.name, exc)
                    return
            if len(texts) != len(batch):
                return


class ComparisonRun:
    """A comparison being generated in this process (its database row exists: the database
    admitted it before any provider was called).

    With ``held=True`` its frames are held until :meth:`release` hands them to the socket that
    started it, so ``sessionCreated`` can go out first.
    """

    def __init__(
        self, *, comparison_id: str, user_id: str, slots: list[SlotRun], held: bool = False
    ) -> None:
        self.comparison_id = comparison_id
        self.user_id = user_id
        self.slots = slots
        self.status: str = ComparisonStatus.STREAMING
        self.cancelled = False
        self.subscribers: dict[str, Subscriber] = {}
        self.done = asyncio.Event()
        self._save_lock = asyncio.Lock()
        #: Frames published before :meth:`release` (``None`` once released).
        self._held: list[str] | None = [] if held else None
        self._main: asyncio.Task[None] | None = None
        #: The ``comparisonComplete`` frame, once sent.
        self._final: str | None = None

    # --- subscribers -----------------------------------------------------------------------
    def subscribe(self, name: str, send: Subscriber) -> None:
        self.subscribers[name] = send

    def unsubscribe(self, name: str) -> None:
        subscriber = self.subscribers.pop(name, None)
        if isinstance(subscriber, QueuedSubscriber):
            subscriber.close()

    def watch(self, name: str, target: BatchSubscriber) -> None:
        """Add a watcher: it gets ``sessionSnapshot`` now and then every later event, up to
        exactly one ``comparisonComplete`` (at once when the run has already sent it)."""
        watcher = QueuedSubscriber(target, name)
        watcher.queue.put_nowait(encode_event("sessionSnapshot", self.snapshot()))
        if self._final is not None:
            watcher.queue.put_nowait(self._final)
            watcher.close()
            return
        self.subscribers[name] = watcher

    async def publish(self, text: str) -> None:
        """Send one encoded frame to every subscriber; a failing subscriber is dropped."""
        if self._held is not None:
            self._held.append(text)
        for name, send in tuple(self.subscribers.items()):
            try:
                await send(text)
            except Exception:  # a closed socket must not break the run
                self.subscribers.pop(name, None)

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        await self.publish(encode_event(event, data))

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._main is not None

    def start(self) -> asyncio.Task[None]:
        """Start every slot and the flusher; returns the task that ends with the comparison."""
        if self._main is None:
            self._main = asyncio.create_task(self._run(), name=f"comparison-{self.comparison_id}")
        return self._main

    async def release(self, name: str | None = None, send: Subscriber | None = None) -> None:
        """Deliver the frames held so far to ``send`` (the starting socket), in order, and
        subscribe it; later frames go straight out. Watchers added while frames were held got
        a snapshot that already contains them."""
        held = self._held
        if held is None:
            raise RuntimeError("This run has already been released")
        sent = 0
        try:
            while send is not None and sent < len(held):  # frames keep arriving meanwhile
                await send(held[sent])
                sent += 1
        except Exception:
            send = None  # the socket went away; the run goes on without it
        self._held = None
        if name is not None and send is not None:
            self.subscribers[name] = send

    def snapshot(self) -> dict[str, Any]:
        return {
            "sessionId": self.comparison_id,
            "status": self.status,
            "models": [slot.snapshot() for slot in self.slots],
        }

    def slot(self, key: str) -> SlotRun | None:
        return next((s for s in self.slots if s.key == key), None)

    def cancel(self) -> None:
        """Stop every unfinished model (the user pressed Stop)."""
        self.cancelled = True
        for slot in self.slots:
            self.cancel_slot(slot)

    def cancel_slot(self, slot: SlotRun) -> bool:
        """Stop one model; its upstream response is closed by the cancellation."""
        if slot.finished or slot.task is None:
            return False
        slot.cancel_requested = True
        slot.task.cancel()
        return True

    def control(
        self, message: dict[str, Any], send_remote: Callable[[str], BatchSubscriber]
    ) -> None:
        """Handle a control message from another process (watch, stop watching, cancel)."""
        if message.get("user_id") != self.user_id:
            return
        kind = message.get("type")
        reply = str(message.get("reply", ""))
        if kind == "watch.request" and reply:
            self.watch(f"remote:{reply}", send_remote(reply))
        elif kind == "watch.stop":
            self.unsubscribe(f"remote:{reply}")
        elif kind == "run.cancel":
            model = message.get("model")
            if model is None:
                self.cancel()
            elif (slot := self.slot(str(model))) is not None:
                self.cancel_slot(slot)

    async def _run(self) -> None:
        # Watch requests from other processes are answered until the final event is out: the
        # run leaves its group only after ``comparisonComplete``.
        try:
            for slot in self.slots:
                slot.task = asyncio.create_task(self._run_slot(slot))
            await asyncio.gather(*(s.task for s in self.slots if s.task), return_exceptions=True)
            self.status = services.comparison_overall_status(
                [s.status for s in self.slots], cancelled=self.cancelled
            )
            await self._save([], status=self.status)
            final = encode_event(
                "comparisonComplete", {"sessionId": self.comparison_id, "status": self.status}
            )
            self._final = final
            await self.publish(final)
            for subscriber in self.subscribers.values():
                if isinstance(subscriber, QueuedSubscriber):
                    subscriber.close()
        finally:
            await run_control.leave(self)
            self.done.set()

    async def _save(self, slots: list[SlotRun], *, status: str | None = None) -> None:
        progress = [slot.progress() for slot in slots]
        for slot in slots:
            slot.dirty = False
        async with self._save_lock:
            try:
                await database_sync_to_async(services.comparison_save_progress)(
                    comparison_id=self.comparison_id, progress=progress, status=status
                )
            except Exception:
                logger.exception("Could not save comparison %s", self.comparison_id)

    async def _run_slot(self, slot: SlotRun) -> None:
        sid = self.comparison_id
        key = slot.key
        await self.emit("modelStatus", {"sessionId": sid, "model": key, "status": "streaming"})
        slot.status = ResponseStatus.STREAMING
        slot.started_at = timezone.now()
        slot.dirty = True
        prefix = (
            '{"event":"modelChunk","data":{"sessionId":'
            + _dumps(sid)
            + ',"model":'
            + _dumps(key)
            + ',"chunk":'
        )
        chunks = slot.chunks
        timeline = slot.timeline
        publish = self.publish
        clock = time.perf_counter
        start = clock()
        first: float | None = None
        end: StreamEnd | None = None
        try:
            async for event in slot.provider.stream(slot.request):
                if isinstance(event, StreamEnd):
                    end = event
                    break
                text = event.text
                if not text:
                    continue
                now = clock()
                if first is None:
                    first = now
                index = len(chunks)
                chunks.append(text)
                timeline.append([round((now - start) * 1000, 1), len(text)])
                slot.dirty = True
                await publish(f'{prefix}{_dumps(text)},"index":{index}}}}}')
        except asyncio.CancelledError:
            slot.status = ResponseStatus.CANCELLED
            slot.error = "Cancelled by the user." if slot.cancel_requested else "Cancelled."
        except ProviderError as exc:
            slot.status = ResponseStatus.ERROR
            slot.error = exc.message
        except Exception:
            logger.exception("Model %s of comparison %s failed", key, sid)
            slot.status = ResponseStatus.ERROR
            slot.error = "Internal error while streaming this model."
        else:
            if end is None:
                slot.status = ResponseStatus.ERROR
                slot.error = "The provider's stream ended without a final event."
            else:
                slot.status = ResponseStatus.COMPLETE
                slot.finish_reason = end.finish_reason or ""
                slot.metrics = self._metrics(slot, end, start, first, clock())
        slot.finished_at = timezone.now()
        slot.dirty = True
        if slot.status == ResponseStatus.COMPLETE:
            await self.emit(
                "modelComplete", {"sessionId": sid, "model": key, "metrics": slot.metrics}
            )
        elif slot.status == ResponseStatus.ERROR:
            await self.emit("modelError", {"sessionId": sid, "model": key, "error": slot.error})
        await self.emit("modelStatus", {"sessionId": sid, "model": key, "status": slot.status})
        await self._save([slot])

    @staticmethod
    def _metrics(
        slot: SlotRun, end: StreamEnd, start: float, first: float | None, finished: float
    ) -> dict[str, Any]:
        usage = end.usage
        model = slot.request.model
        duration_s = finished - start
        generating_s = finished - first if first is not None else duration_s
        # The model the vendor says answered, kept when it is not the one asked for (an alias
        # such as ``-latest`` resolved to a dated version).
        answered = end.model
        if answered and answered.removeprefix("models/") == model.removeprefix("models/"):
            answered = None
        return {
            "durationInMilliseconds": round(duration_s * 1000, 1),
            "tokensUsed": usage.total_tokens,
            # None when the model's price is unknown: never a made-up 0.
            "estimatedCost": slot.provider.estimate_cost(usage, model),
            "timeToFirstTokenInMilliseconds": (
                round((first - start) * 1000, 1) if first is not None else None
            ),
            "inputTokens": usage.input_tokens,
            "outputTokens": usage.output_tokens,
            "tokensPerSecond": (
                round(usage.output_tokens / generating_s, 2) if generating_s > 0 else 0.0
            ),
            "cachedInputTokens": usage.cached_input_tokens,
            "reasoningTokens": usage.reasoning_tokens,
            "priceVersion": slot.provider.price_version,
            "responseModel": answered,
        }


class RunControl:
    """Control messages from other server processes, for every run of this process.

    One channel per process (and event loop) joins the group ``run.<id>`` of each local run; one
    task receives on it while any run is local and hands each message to its run. Runs join
    *before* their ``sessionCreated`` is sent, so a watcher can never ask an empty group.
    """

    def __init__(self) -> None:
        self._runs: dict[str, ComparisonRun] = {}
        self._channel: str | None = None
        self._key: tuple[Any, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def join(self, run: ComparisonRun) -> None:
        """Make ``run`` reachable by watchers and cancels from other processes."""
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await self._listening(layer)
        self._runs[run.comparison_id] = run
        await layer.group_add(run_group(run.comparison_id), channel)

    async def leave(self, run: ComparisonRun) -> None:
        """Stop routing messages to ``run``; the listener stops with the process's last run."""
        if self._runs.pop(run.comparison_id, None) is None or self._channel is None:
            return
        layer = get_channel_layer()
        if layer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    layer.group_discard(run_group(run.comparison_id), self._channel)
                )
        if not self._runs and self._task is not None:
            task, self._task, self._channel, self._key = self._task, None, None, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listening(self, layer: Any) -> str:
        key = (layer, asyncio.get_running_loop())
        if self._channel is None or self._key != key:
            channel = await layer.new_channel()
            if self._key != key:  # not set meanwhile by a concurrent join
                self._channel, self._key = channel, key
                self._runs.clear()
                self._task = asyncio.create_task(self._listen(layer, channel), name="run-control")
        assert self._channel is not None
        return self._channel

    async def _listen(self, layer: Any, channel: str) -> None:
        while True:
            message = await layer.receive(channel)
            session = str(message.get("session", ""))
            run = self._runs.get(session)
            if run is not None:
                run.control(message, functools.partial(_remote_sender, layer, session))


def _remote_sender(layer: Any, session: str, reply: str) -> BatchSubscriber:
    """Frames of ``session`` to the channel ``reply`` of a watcher in another process."""

    async def send(texts: list[str]) -> None:
        await layer.send(reply, WatchEvent(session=session, texts=texts).message())

    return send


run_control = RunControl()


class RunRegistry:
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
        """Register ``run`` (starting it if it has not started yet); while any run is
        registered, their progress is flushed (:mod:`comparisons.flusher`)."""
        self._runs[run.comparison_id] = run
        task = run.start()
        task.add_done_callback(lambda _: self._remove(run))
        self.flusher.wake()
        return task

    def _remove(self, run: ComparisonRun) -> None:
        self._runs.pop(run.comparison_id, None)
        if not self._runs:
            self.flusher.stop()


runs = RunRegistry()
