"""Real server (`manage.py serve`, daphne): frames written to the socket directly (at once when
nothing is queued, twisted's buffer otherwise; `playground/daphne_server.py`) arrive whole, in
order and exactly once — short, 16-bit and 64-bit length headers, multi-byte UTF-8, a burst of
frames in one loop iteration, and a client that stalls so that the kernel takes part of a frame
and the rest queues behind it. And a model that ended is saved by the flusher, not a transaction
of its own."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.comparisons.test_processes import open_socket, rest, warm_up
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ProcessAuth, Server, server_env

# Real processes on a slow, busy machine (load 15 on two cores): the first test of a pytest
# process pays the template database's migrate in its setup (161-218 s), a start with its SDK
# preload tens of seconds more; the refused-starts test's call alone took 134-243 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Frame sizes on both sides of the header's length boundaries (125 / 65,535 bytes), ASCII and
#: multi-byte text (the header counts bytes, not characters).
SHAPES = ["a", "b" * 40, "c" * 200, "模" * 30, "d" * 70_000, "型" * 30_000, "e" * 65_400]
DELTAS = [f"{i:04d}{SHAPES[i % len(SHAPES)]}" for i in range(140)]


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_burst_of_frames_to_a_stalling_client_arrives_whole_in_order_once(
    compression, database, tmp_path, auth, fake_upstream
) -> None:
    fake_upstream.script("burst", deltas=DELTAS)  # no delay: frames queue up in one iteration
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=fake_upstream.url,
    )
    server = Server(env).start(stderr=tmp_path / "server.log")
    try:
        ws = await websockets.connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {auth.token('user_burst')}"},
            compression=compression,
            max_size=None,
            max_queue=1,  # stops reading the socket while this test sleeps
        )
        assert json.loads(await ws.recv())["event"] == "authenticated"
        start = {"prompt": "scenario:burst", "providers": ["google"]}
        await ws.send(json.dumps({"event": "startComparison", "data": start}))
        events: list[dict] = []
        # Includes the first start's wait for the SDK preload (tens of seconds on a busy machine).
        async with asyncio.timeout(240):
            while not events or events[-1]["event"] != "comparisonComplete":
                events.append(json.loads(await ws.recv()))
                if len(events) in (3, 40):
                    await asyncio.sleep(1.0)  # the server's send buffer fills meanwhile
        await ws.close()
    finally:
        server.stop()
    chunks = [e["data"] for e in events if e["event"] == "modelChunk"]
    assert [c["index"] for c in chunks] == list(range(len(DELTAS)))
    assert [c["chunk"] for c in chunks] == DELTAS
    assert [e["event"] for e in events].count("comparisonComplete") == 1
    assert events[-1]["data"]["status"] == "complete"


async def test_a_model_that_ended_is_saved_by_the_next_flush_while_the_other_streams(
    database, tmp_path, auth, fake_upstream
) -> None:
    """A finished slot has no transaction of its own any more: the flusher writes it within
    its interval while the comparison goes on, and the final save at the end."""
    fake_upstream.script("split.google", deltas=["quick", " answer"])
    fake_upstream.script("split.anthropic", deltas=["slow"], stall_after=1)
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=fake_upstream.url,
        ANTHROPIC_API_KEY=TEST_API_KEY,
        ANTHROPIC_BASE_URL=fake_upstream.url,
        PROVIDER_IDLE_TIMEOUT="90",  # the stalled model streams until cancelled
    )
    server = Server(env).start(stderr=tmp_path / "server.log")
    try:
        # The first start waits for the SDK preload: run1.log's modelComplete not within 30 s.
        await warm_up(server, auth, fake_upstream, ["google", "anthropic"])
        socket = await open_socket(server, auth, "user_split")
        start = {"prompt": "scenario:split", "providers": ["google", "anthropic"]}
        await socket.send("startComparison", start)
        events = await socket.until("modelComplete")
        sid = events[0]["data"]["sessionId"]
        ended = events[-1]["data"]["model"]
        deadline = time.monotonic() + 5  # the flush interval is 1 s
        while True:
            saved = rest(server, auth, "user_split", f"/sessions/{sid}")
            if saved["responses"][ended]["status"] == "complete" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert saved["status"] == "streaming"
        assert saved["responses"][ended]["status"] == "complete"
        assert saved["responses"][ended]["content"] == "quick answer"
        await socket.send("cancelComparison", {"sessionId": sid})
        await socket.until("comparisonComplete")
        final = rest(server, auth, "user_split", f"/sessions/{sid}")
        assert final["responses"][ended]["status"] == "complete"
        assert final["status"] != "streaming"
        await socket.ws.close()
    finally:
        server.stop()
