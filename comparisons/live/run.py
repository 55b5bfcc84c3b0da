"""A comparison being generated in this process: one task per model slot, frames fanned out.

A :class:`ComparisonRun` lives independently of any socket: the socket that started it is just its
first subscriber, so closing that socket never stops the run. Each relayed chunk is encoded once
(:class:`comparisons.events.ChunkEncoder`) and sent once per subscriber; text reaches the database
in batches (:mod:`comparisons.live.flusher`), never per chunk; a finished slot too, until the
final save writes every slot with the outcome.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from comparisons import events, services
from comparisons.events import Frame, Metrics
from comparisons.live.subscribers import QueuedWatcher, Subscriber
from comparisons.models import ComparisonStatus, ResponseStatus
from providers.base import BaseProvider
from providers.types import ProviderError, StreamEnd, StreamRequest

logger = logging.getLogger(__name__)


class RunState(enum.Enum):
    """Where a run is in its life. Only the transitions in ``_NEXT`` happen."""

    #: Admitted by the database (its row exists), no provider called yet.
    ADMITTED = "admitted"
    #: Its models are streaming.
    STREAMING = "streaming"
    #: The user asked to stop it; its models are being cancelled.
    CANCELLING = "cancelling"
    #: Every model ended; the final state is being saved.
    FINISHING = "finishing"
    #: ``comparisonComplete`` went out: a late watcher gets it at once.
    ENDED = "ended"


#: Seconds between attempts of a final save while the database is unreachable (the last
#: one repeats for as long as the process lives).
SAVE_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)

_NEXT: dict[RunState, frozenset[RunState]] = {
    RunState.ADMITTED: frozenset({RunState.STREAMING}),
    RunState.STREAMING: frozenset({RunState.CANCELLING, RunState.FINISHING}),
    RunState.CANCELLING: frozenset({RunState.FINISHING}),
    RunState.FINISHING: frozenset({RunState.ENDED}),
    RunState.ENDED: frozenset(),
}


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
    metrics: Metrics | None = None
    started_at: Any = None
    finished_at: Any = None
    dirty: bool = False
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = None
    #: A blind comparison before its reveal: nothing sent may name the model.
    hidden: bool = False
    #: The comparison's turn this slot answers (0: the first prompt).
    turn: int = 0

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
        progress = services.ResponseProgress(
            key=self.key,
            status=self.status,
            content=self.content,
            chunk_count=len(self.chunks),
            timeline=list(self.timeline),
            error=self.error,
            finish_reason=self.finish_reason,
            started_at=self.started_at,
            finished_at=self.finished_at,
            turn=self.turn,
        )
        m = self.metrics
        if m is not None:
            progress.duration_ms = m.duration_ms
            progress.time_to_first_token_ms = m.time_to_first_token_ms
            progress.input_tokens = m.input_tokens
            progress.output_tokens = m.output_tokens
            progress.total_tokens = m.tokens_used
            progress.tokens_per_second = m.tokens_per_second
            progress.cached_input_tokens = m.cached_input_tokens
            progress.reasoning_tokens = m.reasoning_tokens
            progress.estimated_cost = m.estimated_cost
            progress.price_version = m.price_version or ""
            progress.response_model = m.response_model or ""
        return progress

    def snapshot(self) -> dict[str, Any]:
        """This slot as a ``sessionSnapshot`` entry (content so far and the next chunk index)."""
        hidden = self.hidden
        entry: dict[str, Any] = {
            "key": self.key,
            "provider": None if hidden else self.provider.alias,
            "modelName": None if hidden else self.request.model,
            "status": self.status,
            "content": self.content,
            "nextIndex": len(self.chunks),
        }
        metrics = self.public_metrics()
        if metrics is not None:
            entry["metrics"] = metrics.wire()
        if self.error:
            entry["error"] = self.public_error()
        return entry

    def public_metrics(self) -> Metrics | None:
        """The metrics as sent (without what betrays the model while hidden)."""
        m = self.metrics
        return m.hidden() if m is not None and self.hidden else m

    def public_error(self) -> str:
        """The error as sent: the vendor's wording would betray a hidden model."""
        if self.hidden and self.status == ResponseStatus.ERROR:
            return events.HIDDEN_ERROR
        return self.error

    def metrics_at_end(
        self, end: StreamEnd, start: float, first: float | None, finished: float
    ) -> Metrics:
        usage = end.usage
        model = self.request.model
        duration_s = finished - start
        generating_s = finished - first if first is not None else duration_s
        # The model the vendor says answered, kept when it is not the one asked for (an alias
        # such as ``-latest`` resolved to a dated version).
        answered = end.model
        if answered and answered.removeprefix("models/") == model.removeprefix("models/"):
            answered = None
        return Metrics(
            duration_ms=round(duration_s * 1000, 1),
            tokens_used=usage.total_tokens,
            estimated_cost=self.provider.estimate_cost(usage, model),
            time_to_first_token_ms=(
                round((first - start) * 1000, 1) if first is not None else None
            ),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens_per_second=(
                round(usage.output_tokens / generating_s, 2) if generating_s > 0 else 0.0
            ),
            cached_input_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            price_version=self.provider.price_version,
            response_model=answered,
        )


class Fanout:
    """A run's subscribers. Until :meth:`release`, frames are also held for the socket that
    started the run, so its ``sessionCreated`` can go out first."""

    def __init__(self, *, held: bool) -> None:
        self.subscribers: dict[str, Subscriber] = {}
        #: Frames published before :meth:`release` (``None`` once released).
        self._held: list[Frame] | None = [] if held else None

    async def publish(self, frame: Frame, *, skip: str | None = None) -> None:
        """Send one frame to every subscriber (but ``skip``); a failing one is dropped."""
        if self._held is not None:
            self._held.append(frame)
        for name, subscriber in tuple(self.subscribers.items()):
            if name == skip:
                continue
            try:
                await subscriber.send(frame)
            except Exception:  # a closed socket must not break the run
                self.subscribers.pop(name, None)

    def add(self, subscriber: Subscriber) -> None:
        replaced = self.subscribers.get(subscriber.name)
        self.subscribers[subscriber.name] = subscriber
        if replaced is not None and replaced is not subscriber:
            replaced.close()  # a watcher's drain task ends instead of pending forever

    def remove(self, name: str) -> None:
        subscriber = self.subscribers.pop(name, None)
        if subscriber is not None:
            subscriber.close()

    def close_all(self) -> None:
        for subscriber in self.subscribers.values():
            subscriber.close()

    async def release(self, subscriber: Subscriber | None) -> None:
        """Deliver the frames held so far to ``subscriber``, in order, and subscribe it; later
        frames go straight out. Watchers added meanwhile got a snapshot that contains them."""
        held = self._held
        if held is None:
            raise RuntimeError("This run has already been released")
        sent = 0
        try:
            while subscriber is not None and sent < len(held):  # frames keep arriving meanwhile
                await subscriber.send(held[sent])
                sent += 1
        except Exception:
            subscriber = None  # the socket went away; the run goes on without it
        self._held = None
        if subscriber is not None:
            self.add(subscriber)


class ComparisonRun:
    """A comparison being generated in this process (its database row exists: the database
    admitted it before any provider was called).

    ``on_end`` is awaited once the run has sent its ``comparisonComplete`` (the registry uses it
    to stop routing control messages to it), before :attr:`done` is set.
    """

    def __init__(
        self,
        *,
        comparison_id: str,
        user_id: str,
        slots: list[SlotRun],
        held: bool = False,
        on_end: Callable[[ComparisonRun], Awaitable[None]] | None = None,
        turn: int = 0,
        opening: Frame | None = None,
        turns: list[dict[str, Any]] | None = None,
    ) -> None:
        self.comparison_id = comparison_id
        self.user_id = user_id
        self.slots = slots
        #: The turn this run answers (0: the comparison's first prompt).
        self.turn = turn
        #: A follow-up turn's ``turnStarted``, its first frame.
        self.opening = opening
        #: A follow-up turn's earlier turns and itself (``{turn, prompt, mode, from}``), for
        #: snapshots.
        self.turns = turns or []
        self.state = RunState.ADMITTED
        #: The overall status on the wire (``streaming`` until the run ends).
        self.status: str = ComparisonStatus.STREAMING
        self.fanout = Fanout(held=held)
        self.done = asyncio.Event()
        self._on_end = on_end
        self._main: asyncio.Task[None] | None = None
        self._final: Frame | None = None
        #: Its final state is in the database (set with its ``comparisonComplete``).
        self.saved = False

    def _enter(self, state: RunState) -> None:
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"run {self.comparison_id}: {self.state.name} -> {state.name}")
        self.state = state

    # --- subscribers -----------------------------------------------------------------------
    def unsubscribe(self, name: str) -> None:
        self.fanout.remove(name)

    def watch(self, subscriber: Subscriber) -> None:
        """Add a watcher: it gets ``sessionSnapshot`` now and then every later event, up to
        exactly one ``comparisonComplete`` (at once when the run has already sent it)."""
        watcher = QueuedWatcher(subscriber)
        watcher.push(events.session_snapshot(self.snapshot()))
        if self.state is RunState.ENDED:
            assert self._final is not None
            watcher.push(self._final)
            watcher.close()
            return
        self.fanout.add(watcher)

    async def release(self, subscriber: Subscriber | None = None) -> None:
        """Hand the frames held so far to ``subscriber`` (the socket that started the run)."""
        await self.fanout.release(subscriber)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start every slot; returns the task that ends with the comparison."""
        if self._main is None:
            self._enter(RunState.STREAMING)
            self._main = asyncio.create_task(self._run(), name=f"comparison-{self.comparison_id}")
        return self._main

    def snapshot(self) -> dict[str, Any]:
        models = [slot.snapshot() for slot in self.slots]
        snapshot: dict[str, Any] = {
            "sessionId": self.comparison_id,
            "status": self.status,
            "models": models,
        }
        if self.turn:
            snapshot["turn"] = self.turn
            *earlier, current = self.turns
            snapshot["turns"] = [*earlier, {**current, "models": models}]
        return snapshot

    async def reveal(self, *, skip: str | None = None) -> None:
        """Its owner revealed it: later frames and snapshots name the models, and every
        subscriber but ``skip`` (the revealing socket, answered already) gets ``revealed`` now.
        Idempotent: nothing is sent when no slot was hidden."""
        if not any(slot.hidden for slot in self.slots):
            return
        for slot in self.slots:
            slot.hidden = False
        if self.state is RunState.ENDED:
            return  # its watchers were sent their end; a new watch gets the names
        models = [
            {"key": s.key, "provider": s.provider.alias, "modelName": s.request.model}
            for s in self.slots
        ]
        await self.fanout.publish(
            events.revealed(session_id=self.comparison_id, models=models), skip=skip
        )

    def slot(self, key: str) -> SlotRun | None:
        return next((s for s in self.slots if s.key == key), None)

    def cancel(self) -> None:
        """Stop every unfinished model (the user pressed Stop)."""
        if self.state is RunState.STREAMING:
            self._enter(RunState.CANCELLING)
        for slot in self.slots:
            self.cancel_slot(slot)

    def cancel_slot(self, slot: SlotRun) -> bool:
        """Stop one model; its upstream response is closed by the cancellation."""
        if slot.finished or slot.task is None:
            return False
        slot.cancel_requested = True
        slot.task.cancel()
        return True

    async def _run(self) -> None:
        try:
            if self.opening is not None:
                await self.fanout.publish(self.opening)
            for slot in self.slots:
                slot.task = asyncio.create_task(self._run_slot(slot))
            await asyncio.gather(*(s.task for s in self.slots if s.task), return_exceptions=True)
            cancelled = self.state is RunState.CANCELLING
            self._enter(RunState.FINISHING)
            self.status = services.comparison_overall_status(
                [s.status for s in self.slots], cancelled=cancelled
            )
            saved = await self._save_final(self.status)
            final = events.comparison_complete(
                session_id=self.comparison_id, status=self.status, saved=saved, turn=self.turn
            )
            self._final = final
            self.saved = saved
            self._enter(RunState.ENDED)
            await self.fanout.publish(final)
            self.fanout.close_all()
        finally:
            if self._on_end is not None:
                await self._on_end(self)
            self.done.set()

    async def _save_final(self, status: str) -> bool:
        """Save every slot and the final ``status`` in one transaction, before
        ``comparisonComplete`` goes out. While the database is unreachable this is retried with
        backoff for as long as the process lives (the connection is dropped before each retry),
        and it overwrites an ``interrupted`` a sweep may have written meanwhile: the process is
        alive and its state is the truth. False when the state cannot be stored at all."""
        delays = iter(SAVE_RETRY_DELAYS)
        attempts = 0
        while True:
            progress = [slot.progress() for slot in self.slots]
            try:
                await database_sync_to_async(services.comparison_save_progress)(
                    comparison_id=self.comparison_id, progress=progress, status=status
                )
            except services.ProgressNotSaved:
                return False  # logged by the service (without the model's output)
            except services.CONNECTION_ERRORS as exc:
                attempts += 1
                if attempts == 1:
                    logger.warning(
                        "Database unreachable saving comparison %s (%s); retrying",
                        self.comparison_id,
                        type(exc).__name__,
                    )
                await database_sync_to_async(services.connection_drop)()
                await asyncio.sleep(next(delays, SAVE_RETRY_DELAYS[-1]))
                continue
            except Exception:
                logger.exception("Could not save comparison %s", self.comparison_id)
                return False
            if attempts:
                logger.warning("Saved comparison %s after %d retries", self.comparison_id, attempts)
            for slot in self.slots:
                slot.dirty = False
            return True

    async def _run_slot(self, slot: SlotRun) -> None:
        sid = self.comparison_id
        key = slot.key
        turn = slot.turn
        publish = self.fanout.publish
        await publish(events.model_status(session_id=sid, model=key, status="streaming", turn=turn))
        slot.status = ResponseStatus.STREAMING
        slot.started_at = timezone.now()
        slot.dirty = True
        chunk_frame = events.ChunkEncoder(session_id=sid, model=key, turn=turn)
        chunks = slot.chunks
        timeline = slot.timeline
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
                await publish(chunk_frame(text, index))
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
                slot.metrics = slot.metrics_at_end(end, start, first, clock())
        slot.finished_at = timezone.now()
        slot.dirty = True
        if slot.status == ResponseStatus.COMPLETE:
            metrics = slot.public_metrics()
            await publish(
                events.model_complete(session_id=sid, model=key, metrics=metrics, turn=turn)
            )
        elif slot.status == ResponseStatus.ERROR:
            error = slot.public_error()
            await publish(events.model_error(session_id=sid, model=key, error=error, turn=turn))
        await publish(events.model_status(session_id=sid, model=key, status=slot.status, turn=turn))
        # Its final state is written by the next flush (it is dirty) or, when it was the last
        # slot running, by the final save right after (every slot, one transaction): a save of
        # its own was one more transaction per slot on the database thread.
