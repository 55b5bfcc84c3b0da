"""Admission before the first upstream byte: a start the limits refuse reaches no provider.

Upstream requests are counted where they arrive, at the fake upstream. Comparison rows inserted
directly stand for comparisons another server process runs (it shares only the database).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from comparisons.models import Comparison, ComparisonStatus
from tests.comparisons.test_socket import CLAUDE, GEMINI, assert_model_sequence, saved, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]

#: Six models, as many as one start may ask for.
SIX = [{"provider": "google"}, {"provider": "anthropic"}] * 3
LONG = [f"w{i} " for i in range(100)]


@pytest.fixture
async def other_session() -> AsyncIterator[psycopg.AsyncConnection]:
    """Another database session, as another server process would have."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    async with await psycopg.AsyncConnection.connect(**params) as other:
        yield other


async def _finish_one(upstream, connect, user: str) -> None:
    """An admitted comparison of ``user``, start to end: once it is over, any request a refused
    start had opened would long have reached the upstream."""
    upstream.script("barrier", deltas=["ok"])
    client = await connect(user)
    await client.send("startComparison", {"prompt": "scenario:barrier", "providers": ["google"]})
    events = await client.until_event("comparisonComplete")
    assert events[0]["event"] == "sessionCreated"
    assert len(upstream.requests_for("barrier")) >= 1


@pytest.mark.postgres
async def test_providers_are_called_only_after_the_database_admitted_the_start(
    upstream_providers, connect, other_session
) -> None:
    upstream = upstream_providers
    upstream.script("late.google", deltas=["Gem", "ini ", "first"], delay=0.001)
    upstream.script("late.anthropic", deltas=["Clau", "de"], delay=0.001)
    client = await connect("user_late")
    # The admission of this user's start waits on the lock another session holds.
    await other_session.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", ["comparison:user_late"]
    )
    await client.send(
        "startComparison",
        {"prompt": "scenario:late", "providers": ["google", "anthropic"], "requestId": "r1"},
    )
    # Wait until the start waits for its admission (the lock); an early provider call would
    # have been made by then.
    async with asyncio.timeout(5):
        while True:
            waiting = await other_session.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            if (await waiting.fetchone()) != (0,):
                break
            await asyncio.sleep(0.01)
    released = time.monotonic()
    await other_session.commit()
    events = await client.until_event("comparisonComplete")
    assert events[0]["event"] == "sessionCreated"
    assert events[0]["data"]["requestId"] == "r1"
    sid = events[0]["data"]["sessionId"]
    requests = upstream.requests_for("late.google") + upstream.requests_for("late.anthropic")
    assert len(requests) == 2
    assert all(r.started_at > released for r in requests)
    assert_model_sequence(events[1:], GEMINI, "complete")
    assert_model_sequence(events[1:], CLAUDE, "complete")
    assert text_of(events, GEMINI) == "Gemini first"
    assert text_of(events, CLAUDE) == "Claude"
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete"}
    comparison = await saved(sid)
    assert comparison.status == ComparisonStatus.COMPLETE


@pytest.mark.parametrize("limit", ["running", "per_minute"])
async def test_refused_starts_open_no_upstream_request(
    limit, settings, upstream_providers, connect
) -> None:
    """The user's limit is used up by comparisons of another server process: five starts
    here are refused, and not one opens a request to a provider."""
    if limit == "running":
        settings.PLAYGROUND_MAX_RUNNING_PER_USER = 1
        message = "1 comparisons running (limit 1)"
    else:
        settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 1
        message = "1 comparisons in the last minute (limit 1)"
    elsewhere = await sync_to_async(Comparison.objects.create)(
        user_id="user_elsewhere", prompt="running on another process"
    )
    upstream = upstream_providers
    upstream.script("refused", deltas=LONG, delay=0.02)
    clients = [await connect("user_elsewhere") for _ in range(5)]
    for n, client in enumerate(clients):
        await client.send(
            "startComparison",
            {"prompt": "scenario:refused", "models": SIX, "requestId": f"r{n}"},
        )
    for n, client in enumerate(clients):
        [reply] = await client.until_event("error")
        assert reply["data"] == {"message": reply["data"]["message"], "requestId": f"r{n}"}
        assert message in reply["data"]["message"]
    assert await sync_to_async(Comparison.objects.filter(user_id="user_elsewhere").count)() == 1

    await sync_to_async(Comparison.objects.filter(pk=elsewhere.pk).update)(
        status=ComparisonStatus.COMPLETE,
        created_at=elsewhere.created_at.replace(year=elsewhere.created_at.year - 1),
    )
    await _finish_one(upstream, connect, "user_elsewhere")
    assert upstream.requests_for("refused") == []
    for client in clients:
        await client.expect_nothing()


async def test_a_burst_of_starts_opens_upstream_requests_for_the_admitted_ones_only(
    settings, upstream_providers, connect
) -> None:
    """30 sockets of one user start six models each at once; 3 may run: 18 upstream requests,
    not 180, and the 27 refused sockets receive their error and nothing else."""
    settings.PLAYGROUND_MAX_RUNNING_PER_USER = 3
    settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 100
    settings.WS_MAX_SOCKETS_PER_USER = 30
    upstream = upstream_providers
    upstream.script("burst", deltas=LONG, delay=0.05)
    clients = [await connect("user_burst") for _ in range(30)]
    await asyncio.gather(
        *(
            client.send("startComparison", {"prompt": "scenario:burst", "models": SIX})
            for client in clients
        )
    )
    replies = [
        (await client.until(lambda e: e["event"] in ("sessionCreated", "error")))[-1]
        for client in clients
    ]
    admitted = [c for c, r in zip(clients, replies, strict=True) if r["event"] == "sessionCreated"]
    refused = [c for c, r in zip(clients, replies, strict=True) if r["event"] == "error"]
    assert len(admitted) == 3 and len(refused) == 27
    for client in admitted:
        events = await client.until(lambda e: e["event"] == "modelChunk")
        assert events[-1]["data"]["index"] == 0
    async with asyncio.timeout(5):
        while len(upstream.requests_for("burst")) < 18:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    for client in admitted:
        await client.send("cancelComparison", {"sessionId": client.events[1]["data"]["sessionId"]})
        await client.until_event("comparisonComplete")
    await _finish_one(upstream, connect, "user_burst_barrier")
    assert len(upstream.requests_for("burst")) == 18
    for client in refused:
        assert [e["event"] for e in client.events] == ["authenticated", "error"]
