"""Load the server refuses rather than breaks under: the per-process stream bound, a lagging
event loop, watch floods.

A start over ``PLAYGROUND_MAX_STREAMS_PER_PROCESS``, or while the event loop runs later than
``PLAYGROUND_MAX_LOOP_LAG_SECONDS``, gets ``error`` ``server-busy`` before anything is saved or
called; admitted comparisons go on whole. ``watchSession`` costs a whole snapshot, so
a repeat watch of a watched session is ignored and watches per socket are rate-limited.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from comparisons import events, services
from comparisons.frames import ModelChoice
from comparisons.live.core import LiveComparisons, ServerBusy
from comparisons.live.run import ComparisonRun
from comparisons.live.subscribers import QueuedWatcher, Subscriber
from comparisons.models import Comparison

pytestmark = [pytest.mark.django_db(transaction=True)]


async def _import_sdks() -> None:
    """Import both vendors' SDKs off the loop first: on a busy machine the first start would
    otherwise spend more than a receive timeout importing them on the event loop's thread."""
    await sync_to_async(services.comparison_plan)(
        choices=[ModelChoice(provider="google"), ModelChoice(provider="anthropic")]
    )


async def _until_chunks(client, count: int) -> None:
    seen: set[str] = set()

    def chunk(event) -> bool:
        if event["event"] == "modelChunk":
            seen.add(event["data"]["model"])
        return len(seen) >= count

    await client.until(chunk)


async def test_a_start_over_the_process_stream_bound_is_refused_as_server_busy(
    settings, upstream_providers, connect
) -> None:
    settings.PLAYGROUND_MAX_STREAMS_PER_PROCESS = 2
    await _import_sdks()
    upstream = upstream_providers
    upstream.script("held", deltas=["a", "b"], stall_after=1)
    upstream.script("refused", deltas=["x"])
    alice = await connect("user_alice")
    await alice.send(
        "startComparison", {"prompt": "scenario:held", "providers": ["google", "anthropic"]}
    )
    created = await alice.until_event("sessionCreated")
    held = created[-1]["data"]["sessionId"]
    await _until_chunks(alice, 2)

    bob = await connect("user_bob")
    await bob.send(
        "startComparison",
        {"prompt": "scenario:refused", "providers": ["google"], "requestId": "r9"},
    )
    error = (await bob.until_event("error"))[-1]["data"]
    assert error["reason"] == "server-busy"
    assert error["requestId"] == "r9"
    assert error["retryAfter"] == 5
    assert error["message"].startswith("Server busy") and "retry in" in error["message"]
    assert upstream.requests_for("refused") == []
    assert not await sync_to_async(Comparison.objects.filter(user_id="user_bob").exists)()

    # The admitted comparison is whole: it ends normally once stopped.
    await alice.send("cancelComparison", {"sessionId": held})
    done = await alice.until_event("comparisonComplete")
    assert done[-1]["data"]["sessionId"] == held
    # Its streams are closed: a start fits again.
    await bob.send("startComparison", {"prompt": "scenario:refused", "providers": ["google"]})
    got = await bob.until_event("comparisonComplete")
    assert got[0]["event"] == "sessionCreated"


async def test_a_start_while_the_event_loop_lags_is_refused_and_admitted_runs_stay_whole(
    settings, upstream_providers, connect
) -> None:
    settings.PLAYGROUND_MAX_LOOP_LAG_SECONDS = 0.1
    await _import_sdks()
    upstream = upstream_providers
    deltas = [f"part {i}. " for i in range(20)]
    upstream.script("admitted", deltas=deltas, delay=0.05)
    upstream.script("refused", deltas=["x"])
    alice = await connect("user_alice")
    bob = await connect("user_bob")
    await alice.send(
        "startComparison", {"prompt": "scenario:admitted", "providers": ["google", "anthropic"]}
    )
    await _until_chunks(alice, 2)

    # The process stalls for a second (as under a CPU-bound burst): its loop runs late.
    asyncio.get_running_loop().call_soon(time.sleep, 1.0)
    await asyncio.sleep(0)
    await bob.send(
        "startComparison",
        {"prompt": "scenario:refused", "providers": ["google"], "requestId": "r1"},
    )
    error = (await bob.until_event("error"))[-1]["data"]
    assert error["reason"] == "server-busy"
    assert error["requestId"] == "r1"
    assert error["retryAfter"] == 5
    assert error["message"].startswith("Server busy") and "ms behind" in error["message"]
    assert "retry in 5 s" in error["message"]
    assert upstream.requests_for("refused") == []
    assert not await sync_to_async(Comparison.objects.filter(user_id="user_bob").exists)()

    # The admitted comparison lost nothing to the stall: every chunk, in order, then complete.
    await alice.until_event("comparisonComplete", timeout=20)
    for model in {e["data"]["model"] for e in alice.events if e["event"] == "modelChunk"}:
        chunks = [
            e["data"]
            for e in alice.events
            if e["event"] == "modelChunk" and e["data"]["model"] == model
        ]
        assert [c["chunk"] for c in chunks] == deltas
        assert [c["index"] for c in chunks] == list(range(len(deltas)))
    assert alice.events[-1]["data"]["status"] == "complete"
    assert [e["event"] for e in alice.events].count("modelComplete") == 2

    # Once the loop keeps time again, starts are admitted (retried as told: this machine's own
    # load may hold the loop back for a while).
    async with asyncio.timeout(30):
        while True:
            await bob.send(
                "startComparison", {"prompt": "scenario:refused", "providers": ["google"]}
            )
            got = await bob.until(lambda e: e["event"] in ("sessionCreated", "error"))
            if got[-1]["event"] == "sessionCreated":
                break
            assert got[-1]["data"]["reason"] == "server-busy"
            await asyncio.sleep(0.5)
    await bob.until_event("comparisonComplete")
    assert len(upstream.requests_for("refused")) == 1


async def test_a_burst_of_starts_on_an_idle_process_is_admitted_at_a_ramp(
    settings, upstream_providers
) -> None:
    """The lag shows the cost of new streams only after about a second: an idle process (lag 0)
    admits at most ``PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND`` new streams at once and refuses the
    rest of a burst as busy, before anything is saved or called."""
    settings.PLAYGROUND_MAX_LOOP_LAG_SECONDS = 60.0  # never reached here: the ramp alone
    settings.PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND = ramp = 40
    upstream = upstream_providers
    upstream.script("burst", deltas=["a", "b"])
    slots = await sync_to_async(services.comparison_plan)(
        choices=[ModelChoice(provider="google")] * 4
    )
    live = LiveComparisons()
    bursts = ramp // 4 + 3
    # One event-loop iteration admits or refuses every one of them (each launch's first step).
    outcomes = await asyncio.gather(
        *(
            live.launch(
                user_id=f"user_{i}", prompt="scenario:burst", slots=slots, enforce_limits=False
            )
            for i in range(bursts)
        ),
        return_exceptions=True,
    )
    runs = [o for o in outcomes if isinstance(o, ComparisonRun)]
    refused = [o for o in outcomes if isinstance(o, ServerBusy)]
    assert len(runs) == ramp // 4
    assert len(refused) == 3
    assert "started here in the last second" in str(refused[0])
    assert refused[0].retry_after == 5
    for run in runs:
        await run.release(None)
    async with asyncio.timeout(20):
        for run in runs:
            await run.done.wait()
    # Exactly the admitted streams reached the upstream; the refused starts saved nothing.
    assert len(upstream.requests_for("burst")) == ramp // 4 * 4
    saved = await sync_to_async(Comparison.objects.count)()
    assert saved == len(runs)


async def test_a_repeat_watch_of_a_watched_session_sends_no_second_snapshot(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script("watched", deltas=["a", "b"], stall_after=1)
    starter = await connect("user_alice")
    await starter.send("startComparison", {"prompt": "scenario:watched", "providers": ["google"]})
    sid = (await starter.until_event("sessionCreated"))[-1]["data"]["sessionId"]
    await _until_chunks(starter, 1)

    watcher = await connect("user_alice")
    await watcher.send("watchSession", {"sessionId": sid})
    await watcher.until_event("sessionSnapshot")
    # Counted after the first watch, which may start the socket's channel-layer listener.
    tasks_before = len(asyncio.all_tasks())
    for _ in range(10):
        await watcher.send("watchSession", {"sessionId": sid})
    # A request that is answered for sure bounds the wait for any second snapshot.
    await watcher.send("watchSession", {"sessionId": "missing"})
    got = await watcher.until_event("error")
    assert [e["event"] for e in got] == ["error"]
    assert "not found" in got[-1]["data"]["message"]
    # The repeats started no watcher task each (they used to leak one per repeat).
    assert len(asyncio.all_tasks()) <= tasks_before + 2

    await starter.send("cancelComparison", {"sessionId": sid})
    ends = await watcher.until_event("comparisonComplete")
    assert [e["event"] for e in ends].count("sessionSnapshot") == 0


async def test_watch_requests_over_the_rate_limit_get_an_error(
    settings, upstream_providers, connect
) -> None:
    settings.PLAYGROUND_MAX_WATCHES_PER_10_SECONDS = 3
    client = await connect("user_alice")
    for _ in range(3):
        await client.send("watchSession", {"sessionId": "missing"})
        got = await client.until_event("error")
        assert "not found" in got[-1]["data"]["message"]
    await client.send("watchSession", {"sessionId": "missing"})
    got = await client.until_event("error")
    assert got[-1]["data"]["message"] == "Too many watch requests: at most 3 per 10 s"


class _Recorder(Subscriber):
    def __init__(self) -> None:
        self.name = "socket-1"
        self.frames: list[events.Frame] = []

    async def send(self, frame: events.Frame) -> None:
        self.frames.append(frame)


async def test_a_replaced_watcher_ends_its_task() -> None:
    """Watching again under the same name replaces the watcher; the old one's drain task ends
    (it used to stay pending forever: "Task was destroyed but it is pending")."""
    run = ComparisonRun(comparison_id="c1", user_id="u1", slots=[])
    subscriber = _Recorder()
    run.watch(subscriber)
    first = run.fanout.subscribers["socket-1"]
    assert isinstance(first, QueuedWatcher)
    run.watch(subscriber)
    assert run.fanout.subscribers["socket-1"] is not first
    async with asyncio.timeout(5):
        await first.task
    run.fanout.close_all()
