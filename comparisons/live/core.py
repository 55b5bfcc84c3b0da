"""The live-comparison façade every transport uses: start, cancel, watch, stop watching.

A transport (the ``/ws`` consumer, the Socket.IO server) authenticates a socket, then opens a
:class:`Connection` for it with a :class:`~comparisons.live.subscribers.Subscriber` (its send
method) and only parses inbound events, calls the connection and reports :class:`LiveError`
messages. Everything about runs lives here: admission before any provider call, ``sessionCreated``
before the run's frames, local and cross-process watching (snapshot + live events, exactly one
``comparisonComplete``), cancels from any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from comparisons import events, selectors, services
from comparisons.frames import StartComparison
from comparisons.live.lag import LoopLag
from comparisons.live.layer import LayerInbox
from comparisons.live.messages import (
    RunCancel,
    RunReveal,
    WatchEvent,
    WatchRequest,
    WatchStop,
    run_group,
    turn_stream,
    watch_group,
)
from comparisons.live.registry import LocalRuns, RunControl
from comparisons.live.run import ComparisonRun, RunState, SlotRun
from comparisons.live.subscribers import GroupBroadcast, QueuedWatcher, Subscriber
from comparisons.maintenance import sweep_stale_comparisons
from comparisons.models import Comparison, ComparisonStatus, ModelResponse, new_comparison_id
from comparisons.selectors import TurnView
from providers.registry import providers
from providers.types import StreamRequest

logger = logging.getLogger(__name__)

#: Seconds a remote watch waits for the running process before checking its heartbeat.
REMOTE_WATCH_TIMEOUT_SECONDS = 3.0
#: The window of ``PLAYGROUND_MAX_WATCHES_PER_10_SECONDS``.
WATCH_WINDOW_SECONDS = 10.0
#: The empty session set every new Connection starts with (immutable: shared).
NO_SESSIONS: frozenset[str] = frozenset()


#: How long a refused start is told to wait before it retries.
BUSY_RETRY_SECONDS = 5

#: With the lag bound on, new model streams a process admits per ``RAMP_WINDOW_SECONDS`` are at
#: most ``PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND``, or as many as it already had open before them
#: if more. The lag shows the cost of new streams only after about a second
#: (comparisons/live/lag.py), so a burst must not be admitted whole on an idle loop's zero.
RAMP_WINDOW_SECONDS = 1.0

#: ``error.reason`` of a start refused because this process is at its stream or lag bound.
SERVER_BUSY = "server-busy"


class LiveError(Exception):
    """A request the client gets an ``error`` event for (``str()`` is the message, ``reason``
    its optional stable code, ``retry_after`` seconds to wait before trying again)."""

    reason: str | None = None
    retry_after: int | None = None


class ServerBusy(LiveError):
    """This process serves as much as it may (``PLAYGROUND_MAX_STREAMS_PER_PROCESS`` open model
    streams, or its event loop lags by ``PLAYGROUND_MAX_LOOP_LAG_SECONDS``): a new start is
    refused before anything is saved or called, so admitted ones stay whole."""

    reason = SERVER_BUSY
    retry_after = BUSY_RETRY_SECONDS


class LiveComparisons:
    """The live comparisons of one server process (one per process, passed to each transport)."""

    def __init__(self, *, control: RunControl | None = None) -> None:
        self.runs = LocalRuns()
        self.control = control or RunControl()
        #: Streams of starts between admission and registration (counted against the bound).
        self._admitting = 0
        #: Measured while streams are open or being admitted.
        self.lag = LoopLag(lambda: self._admitting > 0 or len(self.runs) > 0)
        #: (when, streams) admitted in the last ``RAMP_WINDOW_SECONDS``.
        self._fresh: deque[tuple[float, int]] = deque()
        #: This process, in the follow-up turn frames it sends to every watcher's group.
        self.origin = uuid.uuid4().hex
        #: This process's sockets that started or watched each comparison (a follow-up turn
        #: run here reaches them directly).
        self.followers: dict[str, set[Connection]] = {}

    async def launch(
        self,
        *,
        user_id: str,
        prompt: str,
        system: str = "",
        slots: Sequence[services.SlotSpec],
        replay_of_id: str | None = None,
        enforce_limits: bool = True,
        blind: bool = False,
    ) -> ComparisonRun:
        """Save a new comparison (one database call), then start and register its run.

        Admission comes first: the per-user limits are checked under a per-user lock in the
        transaction that inserts the row, so they hold across every server process sharing the
        database, and a refused start reaches no provider (raises
        :class:`comparisons.services.LimitExceeded`; nothing is saved, sent or called then).
        The run's frames are held until :meth:`ComparisonRun.release`.

        ``blind``: keys ``A``, ``B``, … in the order given (the caller shuffles) and every
        frame withholds the models until the reveal.

        Before that, this process's bounds on open model streams and event-loop lag: over
        either, :class:`ServerBusy`.
        """
        await providers.aload(slot.provider for slot in slots)
        self._admit(len(slots))
        self._admitting += len(slots)
        self.lag.wake()
        try:
            return await self._launch(
                user_id=user_id,
                prompt=prompt,
                system=system,
                slots=slots,
                replay_of_id=replay_of_id,
                enforce_limits=enforce_limits,
                blind=blind,
            )
        finally:
            self._admitting -= len(slots)

    async def _launch(
        self,
        *,
        user_id: str,
        prompt: str,
        system: str,
        slots: Sequence[services.SlotSpec],
        replay_of_id: str | None,
        enforce_limits: bool,
        blind: bool,
    ) -> ComparisonRun:
        if blind:
            keys = services.blind_keys(len(slots))
        else:
            keys = services.slot_keys([slot.model for slot in slots])
        run = ComparisonRun(
            comparison_id=new_comparison_id(),
            user_id=user_id,
            held=True,
            on_end=self.control.leave,
            slots=[
                SlotRun(
                    key=key,
                    provider=providers[slot.provider],
                    request=StreamRequest(
                        model=slot.model,
                        prompt=prompt,
                        system=system or None,
                        temperature=slot.temperature,
                        max_tokens=slot.max_tokens,
                    ),
                    hidden=blind,
                )
                for key, slot in zip(keys, slots, strict=True)
            ],
        )
        create = database_sync_to_async(services.comparison_create)(
            comparison_id=run.comparison_id,
            user_id=user_id,
            prompt=prompt,
            system=system,
            slots=slots,
            replay_of_id=replay_of_id,
            enforce_limits=enforce_limits,
            blind=blind,
        )
        # Reachable from other processes before anyone can know its id.
        outcome = await asyncio.gather(create, self.control.join(run), return_exceptions=True)
        failure = next((o for o in outcome if isinstance(o, BaseException)), None)
        if failure is not None:
            await self.control.leave(run)
            raise failure
        self.runs.add(run)  # starts it: the first upstream request follows the admission
        return run

    async def launch_turn(
        self,
        *,
        user_id: str,
        plan: services.TurnPlan,
        requester: str | None = None,
        enforce_limits: bool = True,
    ) -> ComparisonRun:
        """Admit, save and start a follow-up turn (:func:`services.comparison_turn_plan`), as
        :meth:`launch` does a comparison: the process's stream bound, then the per-user limits
        in the transaction that saves the turn (a refused turn reaches no provider). Its frames
        open with ``turnStarted``; this process's other sockets following the comparison get
        them directly, sockets of other processes through the comparison's watch group."""
        for slot in plan.slots:
            if slot.provider not in providers:
                raise services.TurnRefused(
                    f"Provider '{slot.provider}' is no longer configured on this server"
                )
        await providers.aload(slot.provider for slot in plan.slots)
        wanted = len(plan.slots)
        self._admit(wanted)
        self._admitting += wanted
        self.lag.wake()
        try:
            return await self._launch_turn(
                user_id=user_id, plan=plan, requester=requester, enforce_limits=enforce_limits
            )
        finally:
            self._admitting -= wanted

    async def _launch_turn(
        self,
        *,
        user_id: str,
        plan: services.TurnPlan,
        requester: str | None,
        enforce_limits: bool,
    ) -> ComparisonRun:
        hidden = plan.hidden
        slots = [
            SlotRun(
                key=slot.key,
                provider=providers[slot.provider],
                request=StreamRequest(
                    model=slot.model,
                    prompt=plan.prompt,
                    system=plan.system or None,
                    temperature=slot.temperature,
                    max_tokens=slot.max_tokens,
                    history=slot.history,
                ),
                hidden=hidden,
                turn=plan.index,
            )
            for slot in plan.slots
        ]
        source = plan.source_key or None
        opening = events.turn_started(
            session_id=plan.comparison_id,
            turn=plan.index,
            prompt=plan.prompt,
            mode=plan.mode,
            source=source,
            models=[
                {
                    "key": s.key,
                    "provider": None if hidden else s.provider.alias,
                    "modelName": None if hidden else s.request.model,
                }
                for s in slots
            ],
        )
        current = {"turn": plan.index, "prompt": plan.prompt, "mode": plan.mode, "from": source}
        run = ComparisonRun(
            comparison_id=plan.comparison_id,
            user_id=user_id,
            held=True,
            on_end=self.control.leave,
            slots=slots,
            turn=plan.index,
            opening=opening,
            turns=[*turn_entries(plan.earlier, hidden=hidden), current],
        )
        create = database_sync_to_async(services.comparison_turn_create)(
            user_id=user_id, plan=plan, enforce_limits=enforce_limits
        )
        outcome = await asyncio.gather(create, self.control.join(run), return_exceptions=True)
        failure = next((o for o in outcome if isinstance(o, BaseException)), None)
        if failure is not None:
            await self.control.leave(run)
            raise failure
        for follower in self.followers.get(plan.comparison_id, ()):
            if follower.user_id == user_id and follower.subscriber.name != requester:
                run.fanout.add(follower.subscriber)
        layer = get_channel_layer()
        if layer is not None:
            stream = turn_stream(plan.comparison_id, plan.index)
            broadcast = GroupBroadcast(
                layer, session=plan.comparison_id, stream=stream, origin=self.origin
            )
            run.fanout.add(QueuedWatcher(broadcast))
        self.runs.add(run)
        return run

    def open_streams(self) -> int:
        running = sum(1 for run in self.runs.all() for slot in run.slots if not slot.finished)
        return running + self._admitting

    def _admit(self, wanted: int) -> None:
        bound = settings.PLAYGROUND_MAX_STREAMS_PER_PROCESS
        if self.open_streams() + wanted > bound:
            raise ServerBusy(
                f"Server busy: {bound} model streams are open here; retry in {BUSY_RETRY_SECONDS} s"
            )
        max_lag = settings.PLAYGROUND_MAX_LOOP_LAG_SECONDS
        if max_lag <= 0:
            return
        # A saturated loop delays every admitted stream's chunks: refuse more work first.
        if (lag := self.lag.seconds()) > max_lag:
            raise ServerBusy(
                f"Server busy: it runs {lag * 1000:.0f} ms behind (limit {max_lag * 1000:.0f} ms);"
                f" retry in {BUSY_RETRY_SECONDS} s"
            )
        now = time.monotonic()
        fresh = self._fresh
        while fresh and now - fresh[0][0] >= RAMP_WINDOW_SECONDS:
            fresh.popleft()
        recent = sum(n for _, n in fresh)
        settled = max(0, self.open_streams() - recent)
        if recent + wanted > max(settings.PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND, settled):
            raise ServerBusy(
                f"Server busy: {recent} model streams started here in the last second;"
                f" retry in {BUSY_RETRY_SECONDS} s"
            )
        fresh.append((now, wanted))

    def connect(self, *, user_id: str, subscriber: Subscriber) -> Connection:
        """Open the live side of an authenticated socket. It has no channel-layer channel
        until it first needs one (a watch through the layer): most sockets never do."""
        return Connection(self, user_id=user_id, subscriber=subscriber)

    def owned_run(self, *, user_id: str, comparison_id: str) -> ComparisonRun | None:
        run = self.runs.get(comparison_id)
        return run if run is not None and run.user_id == user_id else None


def session_created(run: ComparisonRun, request_id: str | None = None) -> events.Frame:
    hidden = any(s.hidden for s in run.slots)
    return events.session_created(
        session_id=run.comparison_id,
        models=[
            {
                "key": s.key,
                "provider": None if hidden else s.provider.alias,
                "modelName": None if hidden else s.request.model,
            }
            for s in run.slots
        ],
        request_id=request_id,
        blind=hidden,
    )


def _row_entry(row: ModelResponse, *, hidden: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": row.key,
        "provider": None if hidden else row.provider,
        "modelName": None if hidden else row.model_name,
        "status": row.status,
        "content": row.content,
        "nextIndex": row.chunk_count,
    }
    if row.metrics is not None:
        entry["metrics"] = events.metrics_hidden(row.metrics) if hidden else row.metrics
    if row.error:
        entry["error"] = events.HIDDEN_ERROR if hidden else row.error
    return entry


def turn_entries(turns: Sequence[TurnView], *, hidden: bool) -> list[dict[str, Any]]:
    """Saved turns as a snapshot's ``turns``: ``{turn, prompt, mode, from, models}``."""
    return [
        {
            "turn": turn.index,
            "prompt": turn.prompt,
            "mode": turn.mode,
            "from": turn.source,
            "models": [_row_entry(row, hidden=hidden) for row in turn.rows],
        }
        for turn in turns
    ]


def saved_snapshot(comparison: Comparison) -> dict[str, Any]:
    """A saved comparison as ``sessionSnapshot`` data (a blind one's models withheld until
    its reveal, as REST does). With follow-up turns, ``models`` are the last turn's, ``turn``
    its index and ``turns`` every turn."""
    hidden = comparison.identity_hidden
    turns = selectors.comparison_turns(comparison=comparison)
    models = [_row_entry(row, hidden=hidden) for row in turns[-1].rows]
    snapshot: dict[str, Any] = {
        "sessionId": comparison.id,
        "status": comparison.status,
        "models": models,
    }
    if len(turns) > 1:
        snapshot["turn"] = turns[-1].index
        entries = turn_entries(turns[:-1], hidden=hidden)
        last = turns[-1]
        entries.append(
            {
                "turn": last.index,
                "prompt": last.prompt,
                "mode": last.mode,
                "from": last.source,
                "models": models,
            }
        )
        snapshot["turns"] = entries
    return snapshot


async def run_reveal_announce(*, comparison_id: str, user_id: str, reply: str = "") -> None:
    """Tell the process running ``comparison_id`` (if any, this one included) that its owner
    revealed it (:class:`RunReveal`). Best effort: without the layer the run keeps withholding
    the names until it ends; the saved state and every later REST answer show them."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = RunReveal(session=comparison_id, user_id=user_id, reply=reply)
    try:
        await layer.group_send(run_group(comparison_id), message.message())
    except Exception as exc:
        logger.warning("Reveal of %s not announced (%s)", comparison_id, type(exc).__name__)


def _alive(comparison: Comparison) -> bool:
    """Still streaming, and its process flushed (its heartbeat) recently."""
    if comparison.status != ComparisonStatus.STREAMING or comparison.heartbeat_at is None:
        return False
    age = (timezone.now() - comparison.heartbeat_at).total_seconds()
    return age < settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS


class Connection:
    """One authenticated socket's comparisons: those it started and those it watches."""

    def __init__(
        self,
        live: LiveComparisons,
        *,
        user_id: str,
        subscriber: Subscriber,
    ) -> None:
        self.live = live
        self.user_id = user_id
        self.subscriber = subscriber
        # Session-id sets as frozensets, replaced on change (a socket has a few at most): they
        # start as one shared empty frozenset, where four empty sets cost ~0.9 KiB per idle socket.
        self.started: frozenset[str] = NO_SESSIONS
        self.watching: frozenset[str] = NO_SESSIONS
        self._pending: dict[str, asyncio.TimerHandle] = {}
        #: Remote runs that answered this socket's watch request.
        self._answered: frozenset[str] = NO_SESSIONS
        #: Recorded replays whose opening snapshot this socket forwarded.
        self._replays: frozenset[str] = NO_SESSIONS
        self._channel: str | None = None
        self._layer_inbox: LayerInbox | None = None
        self._closed = False
        #: When this socket's recent watch requests came (each one costs a whole snapshot); a
        #: list (a few entries at most): an empty deque costs ~0.6 KiB per idle socket.
        self._watch_times: list[float] = []

    # --- requests ------------------------------------------------------------------------------
    async def start(self, request: StartComparison) -> ComparisonRun:
        """Admit and start a comparison; this socket gets ``sessionCreated``, then its events.
        Raises :class:`LiveError` (or the plan's ``ValueError``) when refused."""
        choices = request.choices()
        await providers.aload(choice.provider for choice in choices)
        slots = services.comparison_plan(choices=choices)
        if request.blind:
            slots = services.slots_shuffle(slots=slots)
        try:
            run = await self.live.launch(
                user_id=self.user_id,
                prompt=request.prompt,
                system=request.system or "",
                slots=slots,
                blind=request.blind,
            )
        except services.LimitExceeded as exc:
            raise LiveError(str(exc)) from None
        self.started |= {run.comparison_id}
        self._follow(run.comparison_id)
        try:
            await self.subscriber.send(session_created(run, request.requestId))
        except Exception:
            await run.release(None)  # the socket went away; the run goes on without it
            return run
        await run.release(self.subscriber)
        return run

    async def follow_up(
        self,
        session_id: str,
        *,
        prompt: str,
        mode: str,
        keys: Sequence[str] | None = None,
        source_key: str = "",
    ) -> ComparisonRun:
        """The next turn of a finished comparison of this user (``followUp`` or
        ``continueFrom``); this socket gets ``turnStarted``, then the turn's events. Refused
        (:class:`LiveError`) while a turn still streams, over a limit, or for a session that
        is not this user's ("not found", as everywhere)."""
        previous = self.live.owned_run(user_id=self.user_id, comparison_id=session_id)
        if previous is not None:
            if previous.state is not RunState.ENDED:
                raise LiveError(
                    f"Session {session_id} is still answering; wait for comparisonComplete "
                    "(or cancel it) before sending a follow-up"
                )
            await previous.done.wait()  # its comparisonComplete is out; only cleanup is left
        try:
            plan = await database_sync_to_async(services.comparison_turn_plan)(
                user_id=self.user_id,
                comparison_id=session_id,
                prompt=prompt,
                mode=mode,
                keys=keys,
                source_key=source_key,
            )
            run = await self.live.launch_turn(
                user_id=self.user_id, plan=plan, requester=self.subscriber.name
            )
        except (services.TurnRefused, services.LimitExceeded) as exc:
            raise LiveError(str(exc)) from None
        self.started |= {session_id}
        self._follow(session_id)
        await run.release(self.subscriber)
        return run

    def _follow(self, session_id: str) -> None:
        self.live.followers.setdefault(session_id, set()).add(self)

    def _unfollow(self, session_id: str) -> None:
        followers = self.live.followers.get(session_id)
        if followers is not None:
            followers.discard(self)
            if not followers:
                del self.live.followers[session_id]

    async def _join_watch_group(self, session_id: str) -> None:
        """Join the comparison's watch group (best effort): later turns run in another process
        reach this socket through it."""
        layer = get_channel_layer()
        channel = await self._inbox(layer)
        if layer is not None and channel is not None:
            with contextlib.suppress(Exception):
                await layer.group_add(watch_group(session_id), channel)

    async def revealed(self, session_id: str) -> None:
        """This user revealed a comparison (this socket was answered ``revealed``): its run, in
        this process or another, names its models from now on and tells its other watchers."""
        run = self.live.owned_run(user_id=self.user_id, comparison_id=session_id)
        if run is not None:
            await run.reveal(skip=self.subscriber.name)
            return
        await run_reveal_announce(
            comparison_id=session_id, user_id=self.user_id, reply=self._channel or ""
        )

    async def cancel(self, session_id: str, model: str | None = None) -> None:
        """Stop a comparison of this user (or one model of it), in any process."""
        run = self.live.owned_run(user_id=self.user_id, comparison_id=session_id)
        if run is not None:
            if model is None:
                run.cancel()
            elif (slot := run.slot(model)) is not None:
                run.cancel_slot(slot)
            else:
                raise LiveError(f"Session {session_id} has no model '{model}'")
            return
        comparison = await self._saved(session_id)
        if comparison is None:
            raise LiveError(f"Session {session_id} not found")
        if comparison.status != ComparisonStatus.STREAMING:
            raise LiveError(f"Session {session_id} is not running")
        layer = get_channel_layer()
        if layer is not None:
            message = RunCancel(session=session_id, user_id=self.user_id, model=model)
            try:
                await layer.group_send(run_group(session_id), message.message())
            except Exception:
                raise LiveError(
                    f"Session {session_id} runs on another server, which cannot be reached"
                    " right now; try again"
                ) from None

    async def watch(self, session_id: str) -> None:
        """Send ``sessionSnapshot`` and then every later event of a comparison of this user,
        up to exactly one ``comparisonComplete``, wherever it runs (or its saved state).

        At most ``PLAYGROUND_MAX_WATCHES_PER_10_SECONDS`` requests per socket (each costs a
        snapshot); a repeat watch of a live comparison this socket already watches is ignored
        (it would only send a second snapshot)."""
        self._count_watch()
        run = self.live.owned_run(user_id=self.user_id, comparison_id=session_id)
        if run is not None and run.state is RunState.ENDED and run.saved:
            # Ended and saved, still being cleaned up: the database is the truth (a reveal made
            # since, through REST, is there and not in the run).
            run = None
        if run is not None:
            if (
                session_id in self.watching
                and run.state is not RunState.ENDED  # its end went out: answer again
                and self.subscriber.name in run.fanout.subscribers
            ):
                return
            self.watching |= {session_id}
            self._follow(session_id)
            run.watch(self.subscriber)
            await self._join_watch_group(session_id)
            return
        if session_id in self._pending or session_id in self._answered:
            return  # the remote run answers (or will answer) this socket already
        comparison = await self._saved(session_id)
        if comparison is None:
            raise LiveError(f"Session {session_id} not found")
        self._follow(session_id)
        # This snapshot replaces a follow-up turn's frames from the group (no chunk twice).
        prefix = turn_stream(session_id, 0).removesuffix("0")
        self._replays = frozenset(r for r in self._replays if not r.startswith(prefix))
        layer = get_channel_layer()
        channel = await self._inbox(layer)
        if layer is not None and channel is not None:
            # Recorded replays and remote runs reach this socket through the layer.
            self.watching |= {session_id}
            try:
                await layer.group_add(watch_group(session_id), channel)
            except Exception as exc:  # joined by rejoin() once the layer is back
                logger.warning("Channel layer unavailable for a watch (%s)", type(exc).__name__)
        if comparison.status != ComparisonStatus.STREAMING or layer is None or channel is None:
            await self._send_saved(comparison)
            return
        # Running in another server process: ask it for a snapshot + live events.
        self._arm(session_id)
        request = WatchRequest(session=session_id, reply=channel, user_id=self.user_id)
        with contextlib.suppress(Exception):  # unanswered: the saved state follows the timeout
            await layer.group_send(run_group(session_id), request.message())

    def _count_watch(self) -> None:
        now = time.monotonic()
        times = self._watch_times
        while times and now - times[0] >= WATCH_WINDOW_SECONDS:
            del times[0]
        limit = settings.PLAYGROUND_MAX_WATCHES_PER_10_SECONDS
        if len(times) >= limit:
            raise LiveError(f"Too many watch requests: at most {limit} per 10 s")
        times.append(now)

    async def unwatch(self, session_id: str) -> None:
        """Stop getting a comparison's events (the run goes on)."""
        self.watching -= {session_id}
        self._answered -= {session_id}
        self.started -= {session_id}
        self._unfollow(session_id)
        handle = self._pending.pop(session_id, None)
        if handle is not None:
            handle.cancel()
        run = self.live.runs.get(session_id)
        if run is not None:
            run.unsubscribe(self.subscriber.name)
        layer = get_channel_layer()
        if layer is None or self._channel is None:
            return
        with contextlib.suppress(Exception):
            if run is None:
                stop = WatchStop(session=session_id, reply=self._channel, user_id=self.user_id)
                await layer.group_send(run_group(session_id), stop.message())
            await layer.group_discard(watch_group(session_id), self._channel)

    async def close(self) -> None:
        """The socket closed: stop listening everywhere (runs keep going without it)."""
        if self._closed:
            return
        self._closed = True
        for session_id in self.started | self.watching:
            await self.unwatch(session_id)
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if self._layer_inbox is not None:
            await self._layer_inbox.stop()
            self._layer_inbox = None

    async def rejoin(self) -> None:
        """After a layer outage: this socket's watch groups again (a restarted Redis forgot
        them). Comparisons running here need none."""
        layer = get_channel_layer()
        if layer is None or self._channel is None:
            return
        for session_id in list(self.watching):
            if self.live.runs.get(session_id) is None:
                await layer.group_add(watch_group(session_id), self._channel)

    # --- messages from other processes ---------------------------------------------------------
    async def deliver(self, event: WatchEvent) -> None:
        """Frames of a watched comparison from another process, of a follow-up turn run
        elsewhere, or of a recorded replay."""
        if event.origin is not None and event.origin == self.live.origin:
            return  # a turn run in this process: its followers here got it directly
        if event.replay is not None:
            if event.opens:
                self._replays |= {event.replay}
            elif event.replay not in self._replays:
                return  # joined mid-replay: without its snapshot, its chunks would not add up
            await self.subscriber.send_many(event.frames)
            return
        session = event.session
        handle = self._pending.pop(session, None)
        if handle is not None:
            handle.cancel()
            self._answered |= {session}
        elif session not in self._answered:
            return  # too late: the saved state and its end marker were sent instead
        frames = event.frames
        if frames and frames[-1].event == "comparisonComplete":
            self._answered -= {session}  # over: a later watch gets the saved state
        await self.subscriber.send_many(frames)

    async def _inbox(self, layer: Any) -> str | None:
        """This socket's channel on the layer (made, with its receiving task, on first use)."""
        if self._channel is None and layer is not None and not self._closed:
            inbox = await LayerInbox.open(
                layer,
                handle=self._on_layer_message,
                what=f"socket {self.subscriber.name}",
                rejoin=self.rejoin,
            )
            if self._closed:  # closed while the channel was being made
                await inbox.stop()
                return None
            self._layer_inbox, self._channel = inbox, inbox.channel
        return self._channel

    async def _on_layer_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == WatchEvent.type:
            try:
                await self.deliver(WatchEvent.from_message(message))
            except Exception:  # the socket went away; close() ends the inbox
                logger.debug("Could not deliver to %s", self.subscriber.name, exc_info=True)

    # --- remote watch: waiting for the running process -------------------------------------------
    def _arm(self, session_id: str) -> None:
        self._pending[session_id] = asyncio.get_running_loop().call_later(
            REMOTE_WATCH_TIMEOUT_SECONDS,
            lambda: asyncio.ensure_future(self._remote_watch_timed_out(session_id)),
        )

    async def _remote_watch_timed_out(self, session_id: str) -> None:
        """No answer from the running process yet: keep waiting while it is alive (a busy
        process answers late, and a second snapshot would break chunk accounting); otherwise
        the saved state is the answer (the run ended, or its process died)."""
        if session_id not in self._pending:
            return
        comparison = await self._saved(session_id)
        if session_id not in self._pending:
            return  # answered meanwhile
        if comparison is not None and _alive(comparison):
            self._arm(session_id)
            return
        del self._pending[session_id]
        if comparison is not None and comparison.status == ComparisonStatus.STREAMING:
            # Its process died: mark it interrupted now (as the next sweep would), so this
            # watcher gets a final state and its end marker rather than waiting for neither.
            await database_sync_to_async(sweep_stale_comparisons)()
            comparison = await self._saved(session_id)
        if comparison is not None:
            await self._send_saved(comparison)

    async def _saved(self, session_id: str) -> Comparison | None:
        return await database_sync_to_async(selectors.comparison_get)(
            user_id=self.user_id, comparison_id=session_id
        )

    async def _send_saved(self, comparison: Comparison) -> None:
        """The saved state as ``sessionSnapshot``; a finished comparison's is followed by its
        one ``comparisonComplete``, as from a run, so every watcher gets one end marker."""
        snapshot = saved_snapshot(comparison)
        frames = [events.session_snapshot(snapshot)]
        if comparison.status != ComparisonStatus.STREAMING:
            # The last turn's end marker, as its run sent it (``turn`` after a follow-up).
            turn = int(snapshot.get("turn", 0))
            frames.append(
                events.comparison_complete(
                    session_id=comparison.id, status=comparison.status, turn=turn
                )
            )
        await self.subscriber.send_many(frames)
