"""A reveal reaches a blind run in another server process (two daphne instances sharing Redis):
the run names its models from then on and its watchers, in both processes, get ``revealed``."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import pytest

from tests.comparisons.test_processes import Socket, demo_env, open_socket
from tests.servers import ProcessAuth, Server

# Real processes on a slow, busy machine (load 15 on two cores): the first test of a pytest
# process pays the template database's migrate in its setup (161-218 s), a start with its SDK
# preload tens of seconds more; the refused-starts test's call alone took 134-243 s.
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(600)]

USER = "user_reveal"
BLIND = {
    "prompt": "Tell me about relays and switches " * 4,
    "models": [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}],
    "blind": True,
}


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


def put(server: Server, auth: ProcessAuth, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {auth.token(USER)}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def start_blind(starter: Socket) -> str:
    await starter.send("startComparison", BLIND)
    # The first start waits for the server's provider import (slow on a busy machine).
    created = await starter.receive(timeout=60)
    assert created["event"] == "sessionCreated" and created["data"]["blind"] is True
    await starter.until("modelChunk", timeout=60)  # streaming in the first process
    sid: str = created["data"]["sessionId"]
    return sid


def names(frame: dict[str, Any]) -> set[str]:
    return {m["modelName"] for m in frame["data"]["models"]}


async def test_a_reveal_in_another_process_reaches_the_run_and_its_watchers(
    database, tmp_path, auth, redis_url
) -> None:
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        DEMO_TOKENS_PER_SECOND="12",
    )
    servers: list[Server] = []
    try:
        for _ in range(2):  # each stopped below, even when the second fails to start
            servers.append(Server(env))
            servers[-1].start()
        first, second = servers
        starter = await open_socket(first, auth, USER)
        other = await open_socket(second, auth, USER)

        # 1. Over the socket: `other` (second process) watches, then reveals.
        sid = await start_blind(starter)
        await other.send("watchSession", {"sessionId": sid})
        snapshot = await other.receive()
        assert snapshot["event"] == "sessionSnapshot" and snapshot["data"]["status"] == "streaming"
        assert names(snapshot) == {None}
        await other.send("reveal", {"sessionId": sid})
        # The starter's socket (the run's own process) is told while the run streams.
        got = await starter.until("revealed", session=sid)
        assert "comparisonComplete" not in [e["event"] for e in got]
        assert names(got[-1]) == {"demo-echo", "demo-fast"}
        rest = await starter.until("comparisonComplete", timeout=60, session=sid)
        completes = [e["data"]["metrics"] for e in rest if e["event"] == "modelComplete"]
        # Unmasked from then on (a hidden model's cost would be null; the demo's is 0.0).
        assert completes and all(m["estimatedCost"] is not None for m in completes)
        # The revealer got its answer once, not a second copy through its watch.
        seen = await other.until("comparisonComplete", timeout=60, session=sid)
        revealed = [e for e in seen if e["event"] == "revealed"]
        assert len(revealed) == 1 and names(revealed[0]) == {"demo-echo", "demo-fast"}

        # 2. Over REST, on the second process: a vote that reveals.
        sid = await start_blind(starter)
        await other.send("watchSession", {"sessionId": sid})
        assert (await other.receive())["event"] == "sessionSnapshot"
        vote = put(second, auth, f"/sessions/{sid}/votes/0", {"winner": "A", "reveal": True})
        assert vote["counted"] is True and set(vote["models"]) == {"A", "B"}
        got = await starter.until("revealed", session=sid)
        assert "comparisonComplete" not in [e["event"] for e in got]
        watched = await other.until("revealed", session=sid)
        assert "comparisonComplete" not in [e["event"] for e in watched]
        assert names(watched[-1]) == {"demo-echo", "demo-fast"}
        await starter.until("comparisonComplete", timeout=60, session=sid)
    finally:
        for server in servers:
            server.stop()
