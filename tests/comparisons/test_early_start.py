"""Models start streaming while the comparison row is inserted; limits still refuse cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from comparisons.models import Comparison, ComparisonStatus
from tests.comparisons.test_socket import CLAUDE, GEMINI, assert_model_sequence, saved, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
async def other_session() -> AsyncIterator[psycopg.AsyncConnection]:
    """Another database session, as another server process would have."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    async with await psycopg.AsyncConnection.connect(**params) as other:
        yield other


async def _wait_completed(upstream, scenario: str, count: int) -> None:
    async with asyncio.timeout(5):
        while sum(r.completed for r in upstream.requests_for(scenario)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_models_stream_while_the_database_is_busy_and_arrive_after_session_created(
    upstream_providers, connect, other_session
) -> None:
    upstream = upstream_providers
    upstream.script("early.google", deltas=["Gem", "ini ", "first"], delay=0.001)
    upstream.script("early.anthropic", deltas=["Clau", "de"], delay=0.001)
    client = await connect("user_early")
    # The insert of this user's comparison waits on the lock another session holds.
    await other_session.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", ["comparison:user_early"]
    )
    await client.send(
        "startComparison",
        {"prompt": "scenario:early", "providers": ["google", "anthropic"], "requestId": "r1"},
    )
    # Both providers were called and answered in full meanwhile; the user saw nothing yet
    # (no session to attach chunks to) and nothing is saved.
    await _wait_completed(upstream, "early.google", 1)
    await _wait_completed(upstream, "early.anthropic", 1)
    await client.expect_nothing(0.2)
    rows = await other_session.execute(
        "SELECT count(*) FROM comparisons_comparison WHERE user_id = %s", ["user_early"]
    )
    assert await rows.fetchone() == (0,)

    await other_session.commit()
    events = await client.until_event("comparisonComplete")
    assert events[0]["event"] == "sessionCreated"
    assert events[0]["data"]["requestId"] == "r1"
    sid = events[0]["data"]["sessionId"]
    assert_model_sequence(events[1:], GEMINI, "complete")
    assert_model_sequence(events[1:], CLAUDE, "complete")
    assert text_of(events, GEMINI) == "Gemini first"
    assert text_of(events, CLAUDE) == "Claude"
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete"}
    comparison = await saved(sid)
    assert comparison.status == ComparisonStatus.COMPLETE
    assert {r.key: r.content for r in comparison.responses.all()} == {
        GEMINI: "Gemini first",
        CLAUDE: "Claude",
    }


@pytest.mark.postgres
async def test_a_start_the_database_refuses_sends_and_saves_nothing_then_waits_for_it(
    settings, upstream_providers, connect, other_session
) -> None:
    # Another server process runs this user's only allowed comparison: this process cannot
    # know, so it calls the providers early, and the database refuses.
    settings.PLAYGROUND_MAX_RUNNING_PER_USER = 1
    await sync_to_async(Comparison.objects.create)(
        user_id="user_elsewhere", prompt="running on another process"
    )
    upstream = upstream_providers
    upstream.script("refused", deltas=[f"w{i} " for i in range(50)], delay=0.02)
    client = await connect("user_elsewhere")
    lock = "SELECT pg_advisory_xact_lock(hashtext('comparison:user_elsewhere'))"
    await other_session.execute(lock)  # the database answers slowly
    await client.send(
        "startComparison",
        {"prompt": "scenario:refused", "providers": ["google", "anthropic"], "requestId": "r2"},
    )
    async with asyncio.timeout(5):
        while len(upstream.requests_for("refused")) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await other_session.commit()
    [reply] = await client.until_event("error")
    assert reply["data"]["requestId"] == "r2"
    assert "1 comparisons running (limit 1)" in reply["data"]["message"]
    # The early provider requests are hung up at once; not one of their chunks reaches the user.
    for request in upstream.requests_for("refused"):
        await asyncio.wait_for(request.client_closed.wait(), 2)
        assert not request.completed
    await client.expect_nothing(0.3)
    assert await sync_to_async(Comparison.objects.filter(user_id="user_elsewhere").count)() == 1

    # Refused once: this user's next start waits for the database before calling anyone.
    await other_session.execute(lock)
    await client.send("startComparison", {"prompt": "scenario:refused", "providers": ["google"]})
    await asyncio.sleep(0.3)
    assert len(upstream.requests_for("refused")) == 2
    await other_session.commit()
    [reply] = await client.until_event("error")
    assert "limit 1" in reply["data"]["message"]
    assert len(upstream.requests_for("refused")) == 2

    # Once the other comparison is over, the user starts again normally.
    await sync_to_async(Comparison.objects.filter(user_id="user_elsewhere").update)(
        status=ComparisonStatus.COMPLETE
    )
    upstream.script("again", deltas=["ok"], delay=0.001)
    await client.send("startComparison", {"prompt": "scenario:again", "providers": ["google"]})
    events = await client.until_event("comparisonComplete")
    assert events[0]["event"] == "sessionCreated"
    assert text_of(events, GEMINI) == "ok"


async def test_one_flush_saves_the_text_so_far_of_every_running_comparison(
    settings, upstream_providers, connect
) -> None:
    from comparisons.runner import runs

    settings.PLAYGROUND_FLUSH_INTERVAL = 60.0  # only the explicit flush below writes
    upstream_providers.script("flushed", deltas=[f"w{i} " for i in range(60)], delay=0.02)
    clients = [await connect(f"user_flush_{i}") for i in range(3)]
    for client in clients:
        await client.send(
            "startComparison", {"prompt": "scenario:flushed", "providers": ["google"]}
        )
    sessions = []
    for client in clients:
        events = await client.until(
            lambda e: e["event"] == "modelChunk" and e["data"]["index"] >= 3
        )
        sessions.append(events[0]["data"]["sessionId"])
    before = {sid: (await saved(sid)).heartbeat_at for sid in sessions}
    await runs.flusher.flush()
    for sid in sessions:
        comparison = await saved(sid)
        [row] = comparison.responses.all()
        assert row.status == "streaming" and row.content.startswith("w0 w1 w2 w3 ")
        assert row.chunk_count == len(row.content.split())
        previous = before[sid]
        assert comparison.heartbeat_at is not None and previous is not None
        assert comparison.heartbeat_at > previous
    for client, sid in zip(clients, sessions, strict=True):
        await client.until_event("comparisonComplete")
        [row] = (await saved(sid)).responses.all()
        assert (row.status, row.content) == ("complete", "".join(f"w{i} " for i in range(60)))
