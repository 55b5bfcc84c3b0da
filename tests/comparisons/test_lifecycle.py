"""Cancel, disconnect, watch, limits: in process through the real ASGI application."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from comparisons.events import Frame
from tests.comparisons.test_socket import CLAUDE, GEMINI, assert_model_sequence, saved, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]

SLOW = [f"w{i} " for i in range(40)]


async def test_cancel_comparison_closes_upstream_and_keeps_text(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script("stop", deltas=SLOW, delay=0.05)
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:stop", "providers": ["google", "anthropic"]}
    )
    events = await client.until(lambda e: e["event"] == "modelChunk" and e["data"]["index"] >= 2)
    sid = events[0]["data"]["sessionId"]
    await client.send("cancelComparison", {"sessionId": sid})
    events += await client.until_event("comparisonComplete")
    for request in upstream.requests_for("stop"):
        await asyncio.wait_for(request.client_closed.wait(), 2)
    assert_model_sequence(events, GEMINI, "cancelled")
    assert_model_sequence(events, CLAUDE, "cancelled")
    assert events[-1]["data"]["status"] == "cancelled"
    comparison = await saved(sid)
    assert comparison.status == "cancelled"
    for row in comparison.responses.all():
        assert row.status == "cancelled"
        assert row.content == text_of(events, row.key) and row.content.startswith("w0 ")


async def test_cancel_one_model_lets_the_other_finish(upstream_providers, connect) -> None:
    upstream = upstream_providers
    upstream.script("one.google", deltas=SLOW, delay=0.05)
    upstream.script("one.anthropic", deltas=["quick ", "one"], delay=0.2)
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:one", "providers": ["google", "anthropic"]}
    )
    events = await client.until(
        lambda e: e["event"] == "modelChunk" and e["data"]["model"] == GEMINI
    )
    sid = events[0]["data"]["sessionId"]
    await client.send("cancelModel", {"sessionId": sid, "model": GEMINI})
    events += await client.until_event("comparisonComplete")
    await upstream.wait_closed("one.google")
    assert_model_sequence(events, GEMINI, "cancelled")
    assert_model_sequence(events, CLAUDE, "complete")
    assert text_of(events, CLAUDE) == "quick one"
    assert events[-1]["data"]["status"] == "partial"


async def test_only_the_owner_may_cancel_or_watch(upstream_providers, connect) -> None:
    upstream_providers.script("own", deltas=SLOW[:10], delay=0.02)
    alice = await connect("user_alice")
    mallory = await connect("user_mallory")
    await alice.send("startComparison", {"prompt": "scenario:own", "providers": ["google"]})
    sid = (await alice.receive())["data"]["sessionId"]
    for event, data in (
        ("cancelComparison", {"sessionId": sid}),
        ("cancelModel", {"sessionId": sid, "model": GEMINI}),
        ("watchSession", {"sessionId": sid}),
    ):
        await mallory.send(event, data)
        reply = await mallory.receive()
        assert reply == {"event": "error", "data": {"message": f"Session {sid} not found"}}
    events = await alice.until_event("comparisonComplete")
    assert events[-1]["data"]["status"] == "complete"
    assert text_of(events, GEMINI) == "".join(SLOW[:10])


async def test_disconnect_mid_stream_still_saves_the_complete_answer(
    upstream_providers, connect
) -> None:
    upstream_providers.script("gone", deltas=SLOW[:20], delay=0.02)
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:gone", "providers": ["google", "anthropic"]}
    )
    events = await client.until(lambda e: e["event"] == "modelChunk")
    sid = events[0]["data"]["sessionId"]
    await client.close()
    for _ in range(200):
        comparison = await saved(sid)
        if comparison.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert comparison.status == "complete"
    assert [r.content for r in comparison.responses.all()] == ["".join(SLOW[:20])] * 2
    assert all(not r.client_closed.is_set() for r in upstream_providers.requests_for("gone"))


def assert_watched_exactly_once(
    snapshot: dict[str, Any], later: list[dict[str, Any]], full: dict[str, str]
) -> int:
    """A watcher's view: ``snapshot`` (the ``sessionSnapshot`` data) and the events after it
    hold every chunk of each model exactly once, and end with exactly one
    ``comparisonComplete``; a terminal snapshot is followed by that end marker alone.
    Returns how many chunks arrived after the snapshot."""
    sid = snapshot["sessionId"]
    ends = [e for e in later if e["event"] == "comparisonComplete"]
    assert ends == [later[-1]] and later[-1]["data"]["sessionId"] == sid
    if snapshot["status"] != "streaming":
        assert later == [
            {
                "event": "comparisonComplete",
                "data": {"sessionId": sid, "status": snapshot["status"]},
            }
        ]
    chunks = 0
    for model in snapshot["models"]:
        key = model["key"]
        got = [e["data"] for e in later if e["event"] == "modelChunk" and e["data"]["model"] == key]
        start = model["nextIndex"]
        assert [c["index"] for c in got] == list(range(start, start + len(got)))
        assert model["content"] + "".join(c["chunk"] for c in got) == full[key]
        chunks += len(got)
    return chunks


async def test_watch_from_a_second_socket_sees_every_chunk_exactly_once(
    upstream_providers, connect
) -> None:
    upstream_providers.script("watch", deltas=SLOW, delay=0.01)
    starter = await connect()
    watcher = await connect()  # connected before the start: watching costs one request
    await starter.send(
        "startComparison", {"prompt": "scenario:watch", "providers": ["google", "anthropic"]}
    )
    created = await starter.receive()
    sid = created["data"]["sessionId"]
    await watcher.send("watchSession", {"sessionId": sid})
    snapshot = await watcher.receive()
    assert snapshot["event"] == "sessionSnapshot" and snapshot["data"]["sessionId"] == sid
    seen = await watcher.until_event("comparisonComplete")
    await starter.until_event("comparisonComplete")
    assert_watched_exactly_once(
        snapshot["data"], seen, {GEMINI: "".join(SLOW), CLAUDE: "".join(SLOW)}
    )
    assert seen[-1]["data"]["status"] == "complete"
    await watcher.expect_nothing()


async def test_watching_a_finished_comparison_answers_the_snapshot_then_its_end(
    upstream_providers, connect
) -> None:
    upstream_providers.script("done", deltas=["all ", "done"])
    client = await connect()
    await client.send("startComparison", {"prompt": "scenario:done", "providers": ["anthropic"]})
    events = await client.until_event("comparisonComplete")
    sid = events[0]["data"]["sessionId"]
    other = await connect()
    await other.send("watchSession", {"sessionId": sid})
    snapshot = await other.receive()
    assert snapshot["data"]["status"] == "complete"
    [model] = snapshot["data"]["models"]
    assert (model["content"], model["nextIndex"], model["status"]) == ("all done", 2, "complete")
    assert model["metrics"]["outputTokens"] >= 0
    end = await other.receive()
    assert end == {"event": "comparisonComplete", "data": {"sessionId": sid, "status": "complete"}}
    await other.expect_nothing()


async def test_watching_a_run_that_has_just_finished_gets_one_end_marker(
    upstream_providers, connect
) -> None:
    """A watch that reaches the run after its ``comparisonComplete`` (the socket's or another
    process's) gets the final snapshot and the end marker, never a snapshot alone."""
    from playground.asgi import live

    upstream_providers.script("just", deltas=["fin", "ished"])
    client = await connect()
    await client.send("startComparison", {"prompt": "scenario:just", "providers": ["google"]})
    sid = (await client.receive())["data"]["sessionId"]
    from comparisons.live.subscribers import Subscriber

    run = live.runs.get(sid)
    assert run is not None
    await client.until_event("comparisonComplete")
    await asyncio.wait_for(run.done.wait(), 5)
    watched: list[str] = []
    got_end = asyncio.Event()

    class Collect(Subscriber):
        name = "late"

        async def send(self, frame: Frame) -> None:
            watched.append(frame.ws)
            got_end.set()

    run.watch(Collect())
    await asyncio.wait_for(got_end.wait(), 5)
    events = [json.loads(t) for t in watched]
    assert [e["event"] for e in events] == ["sessionSnapshot", "comparisonComplete"]
    assert events[0]["data"]["models"][0]["content"] == "finished"
    assert events[1]["data"] == {"sessionId": sid, "status": "complete"}


@pytest.mark.parametrize("ending", ["finished meanwhile", "process died"])
async def test_an_unanswered_remote_watch_ends_with_the_saved_state_and_one_end_marker(
    ending, settings, connect
) -> None:
    """The comparison runs in no process here, so nobody answers the watch request: after the
    wait, the saved state is the answer, final either way, and then its one end marker."""
    from datetime import timedelta

    from django.utils import timezone

    from comparisons import services
    from comparisons.models import Comparison

    settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS = 60
    comparison = await sync_to_async(services.comparison_create)(
        user_id="user_alice",
        prompt="elsewhere",
        slots=[services.SlotSpec(provider="demo", model="demo-echo")],
    )
    watcher = await connect()
    await watcher.send("watchSession", {"sessionId": comparison.id})
    rows = Comparison.objects.filter(pk=comparison.id)
    if ending == "finished meanwhile":  # its answer was lost, its final save was not
        await sync_to_async(rows.update)(status="complete")
        expected = "complete"
    else:  # no heartbeat for longer than the stale threshold
        stale = timezone.now() - timedelta(seconds=120)
        await sync_to_async(rows.update)(heartbeat_at=stale)
        expected = "interrupted"
    snapshot = await watcher.receive(timeout=15)
    assert snapshot["event"] == "sessionSnapshot"
    assert snapshot["data"]["status"] == expected
    assert await watcher.receive() == {
        "event": "comparisonComplete",
        "data": {"sessionId": comparison.id, "status": expected},
    }
    await watcher.expect_nothing()


async def test_running_limit_and_rate_limit(settings, upstream_providers, connect) -> None:
    settings.PLAYGROUND_MAX_RUNNING_PER_USER = 2
    upstream_providers.script("busy", deltas=SLOW[:4], delay=0.1)
    client = await connect("user_busy")
    for _ in range(2):
        await client.send("startComparison", {"prompt": "scenario:busy", "providers": ["google"]})
        await client.until_event("sessionCreated")
    await client.send(
        "startComparison",
        {"prompt": "scenario:busy", "providers": ["google"], "requestId": "third"},
    )
    reply = await client.until_event("error")
    assert "2 comparisons running (limit 2)" in reply[-1]["data"]["message"]
    assert reply[-1]["data"]["requestId"] == "third"
    other = await connect("user_free")
    await other.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    assert (await other.receive())["event"] == "sessionCreated"

    settings.PLAYGROUND_MAX_RUNNING_PER_USER = 100
    settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 3
    await client.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    assert (await client.until(lambda e: e["event"] in ("sessionCreated", "error")))[-1][
        "event"
    ] == "sessionCreated"
    await client.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    reply = await client.until_event("error")
    assert "3 comparisons in the last minute (limit 3)" in reply[-1]["data"]["message"]
