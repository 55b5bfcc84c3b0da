"""Real server processes: two daphne instances sharing Redis, SIGKILL recovery, replay commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.servers import ROOT, ProcessAuth, Server, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


class Socket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, event: str, data: Any) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))

    async def receive(self, timeout: float = 15) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(
        self, name: str, timeout: float = 30, session: str | None = None
    ) -> list[dict[str, Any]]:
        """Events up to the first ``name`` (of comparison ``session``, when given)."""
        got = []
        async with asyncio.timeout(timeout):
            while True:
                got.append(await self.receive(timeout))
                last = got[-1]
                if last["event"] == name and session in (None, last["data"].get("sessionId")):
                    return got


async def open_socket(server: Server, auth: ProcessAuth, user: str) -> Socket:
    ws = await websockets.connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {auth.token(user)}"},
        compression=None,
    )
    socket = Socket(ws)
    assert (await socket.receive())["event"] == "authenticated"
    return socket


def rest(server: Server, auth: ProcessAuth, user: str, path: str) -> Any:
    request = urllib.request.Request(
        server.url + path, headers={"Authorization": f"Bearer {auth.token(user)}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


def demo_env(database: str, tmp_path: Path, auth: ProcessAuth, **extra: str) -> dict[str, str]:
    settings = {"DEMO_TOKENS_PER_SECOND": "40", "DEMO_FIRST_TOKEN_DELAY": "0.05", **extra}
    return server_env(database, tmp_path, **auth.env(), **settings)


def chunks_by_model(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["event"] == "modelChunk":
            out.setdefault(event["data"]["model"], []).append(event["data"])
    return out


@pytest.mark.redis
async def test_watch_and_limits_across_two_processes_sharing_redis(
    database, tmp_path, auth, redis_url
) -> None:
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        PLAYGROUND_MAX_RUNNING_PER_USER="2",
    )
    first, second = Server(env).start(), Server(env).start()
    try:
        starter = await open_socket(first, auth, "user_two")
        prompt = "Tell me about relays " * 5
        await starter.send(
            "startComparison",
            {
                "prompt": prompt,
                "models": [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}],
            },
        )
        created = await starter.receive()
        sid = created["data"]["sessionId"]
        before = await starter.until("modelChunk")

        watcher = await open_socket(second, auth, "user_two")
        await watcher.send("watchSession", {"sessionId": sid})
        snapshot = await watcher.receive()
        assert snapshot["event"] == "sessionSnapshot", snapshot
        assert snapshot["data"]["status"] == "streaming"

        # A second comparison fills the limit of 2; a third on the other process is refused.
        await starter.send("startComparison", {"prompt": "again", "providers": ["demo"]})
        other = await open_socket(second, auth, "user_two")
        await asyncio.sleep(0.3)
        await other.send("startComparison", {"prompt": "one more", "providers": ["demo"]})
        refused = await other.until("error")
        assert "limit 2" in refused[-1]["data"]["message"]

        watched = await watcher.until("comparisonComplete", timeout=60)
        assert watched[-1]["data"] == {"sessionId": sid, "status": "complete"}
        # The starter also runs the second comparison; wait for *this* one's end.
        started = before + await starter.until("comparisonComplete", timeout=60, session=sid)
        own = [e for e in started if e["data"].get("sessionId") == sid]
        full = {k: "".join(c["chunk"] for c in v) for k, v in chunks_by_model(own).items()}
        later = chunks_by_model(watched)
        for model in snapshot["data"]["models"]:
            key = model["key"]
            indices = [c["index"] for c in later.get(key, [])]
            assert indices == list(range(model["nextIndex"], model["nextIndex"] + len(indices)))
            assert model["content"] + "".join(c["chunk"] for c in later.get(key, [])) == full[key]
        saved = rest(second, auth, "user_two", f"/sessions/{sid}")
        assert {k: v["content"] for k, v in saved["responses"].items()} == full
    finally:
        first.stop()
        second.stop()


async def test_sigkill_mid_stream_is_recovered_as_interrupted(database, tmp_path, auth) -> None:
    env = demo_env(
        database,
        tmp_path,
        auth,
        DEMO_TOKENS_PER_SECOND="15",
        PLAYGROUND_FLUSH_INTERVAL="0.2",
        PLAYGROUND_HEARTBEAT_STALE_SECONDS="2",
    )
    server = Server(env).start()
    try:
        socket = await open_socket(server, auth, "user_crash")
        await socket.send(
            "startComparison", {"prompt": "A long answer please " * 3, "providers": ["demo"]}
        )
        sid = (await socket.receive())["data"]["sessionId"]
        received = ""
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            event = await socket.receive()
            if event["event"] == "modelChunk":
                received += event["data"]["chunk"]
        server.kill()
    finally:
        server.stop()
    assert received
    restarted = Server(env, port=server.port).start()
    try:
        for _ in range(100):
            saved = rest(restarted, auth, "user_crash", f"/sessions/{sid}")
            if saved["status"] != "streaming":
                break
            await asyncio.sleep(0.1)
        assert saved["status"] == "interrupted"
        [response] = saved["responses"].values()
        assert response["status"] == "interrupted"
        # The text up to the last flush (at most one flush interval behind what was sent).
        assert response["content"] and received.startswith(response["content"])
        assert len(response["content"]) >= len(received) // 2
    finally:
        restarted.stop()


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compare_with_the_demo_provider_and_replays(database, tmp_path, auth) -> None:
    env = demo_env(
        database,
        tmp_path,
        auth,
        DEMO_TOKENS_PER_SECOND="400",
        ANTHROPIC_API_KEY="",
        GOOGLE_GEMINI_API_KEY="",
    )
    live = manage("compare", "What is a relay?", "--user", "user_cli", env=env)
    assert live.returncode == 0, live.stderr
    assert "using the offline demo provider" in live.stderr
    assert "demo-echo" in live.stdout and "Status: complete" in live.stdout
    as_json = manage("compare", "What is a relay?", "--models", "demo:demo-fast", "--json", env=env)
    result = json.loads(as_json.stdout)
    assert result["status"] == "complete" and result["userId"] == "user_cli"
    content = result["responses"]["demo-fast"]["content"]
    assert "demo" in content.lower() and "What is a relay?" in content

    replayed = json.loads(manage("replay", result["id"], "--json", env=env).stdout)
    assert replayed["replayOf"] == result["id"] and replayed["id"] != result["id"]
    assert replayed["responses"]["demo-fast"]["content"] == content  # the demo is deterministic
    other = manage("replay", result["id"], "--models", "demo:demo-echo", env=env)
    assert other.returncode == 0 and "original" in other.stdout and "demo-echo" in other.stdout

    recorded = manage("replay", result["id"], "--recorded", "--speed", "20", "--json", env=env)
    events = json.loads(recorded.stdout)
    assert "".join(e["data"]["chunk"] for e in events if e["event"] == "modelChunk") == content
    assert events[-1] == {
        "event": "comparisonComplete",
        "data": {"sessionId": result["id"], "status": "complete"},
    }

    for args, message in (
        (("replay", "nope"), "Comparison nope not found."),
        (("compare", "hi", "--models", "demo:nope"), "nope"),
        (("compare", "hi", "--models", "nope"), "Unknown provider 'nope'"),
    ):
        failed = manage(*args, env=env)
        assert failed.returncode != 0 and message in failed.stderr
        assert "Traceback" not in failed.stderr
    missing_key = manage("compare", "hi", "--models", "anthropic", "--json", env=env)
    assert missing_key.returncode != 0
    assert "not configured" in missing_key.stdout


@pytest.mark.redis
async def test_recorded_replay_reaches_watchers_on_a_server(
    database, tmp_path, auth, redis_url
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=prefix,
        DEMO_TOKENS_PER_SECOND="400",
    )
    made = json.loads(
        manage(
            "compare", "Replay me", "--models", "demo", "--user", "user_rec", "--json", env=env
        ).stdout
    )
    server = Server(env).start()
    try:
        watcher = await open_socket(server, auth, "user_rec")
        await watcher.send("watchSession", {"sessionId": made["id"]})
        assert (await watcher.receive())["data"]["status"] == "complete"
        player = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "replay",
            made["id"],
            "--recorded",
            "--speed",
            "10",
            "--json",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        events = await watcher.until("comparisonComplete", timeout=60)
        await player.wait()
        text = "".join(e["data"]["chunk"] for e in events if e["event"] == "modelChunk")
        assert text == made["responses"]["demo-echo"]["content"]
    finally:
        server.stop()


async def test_daphne_closes_an_oversized_frame_with_1009(database, tmp_path, auth) -> None:
    server = Server(demo_env(database, tmp_path, auth, WS_MAX_FRAME_BYTES="65536")).start()
    try:
        socket = await open_socket(server, auth, "user_big")
        frame = {"prompt": "y" * 70_000, "providers": ["demo"]}
        await socket.send("startComparison", frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        # The server is fine afterwards and started nothing.
        assert rest(server, auth, "user_big", "/sessions") == []
    finally:
        server.stop()


@pytest.mark.parametrize(("choice", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_serve_runs_on_the_chosen_event_loop(
    choice: str | None, loop: str, database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    """uvloop unless PLAYGROUND_EVENT_LOOP says asyncio; the banner names it; both stream."""
    extra = {"PLAYGROUND_EVENT_LOOP": choice} if choice else {}
    out = tmp_path / "serve.out"
    server = Server(demo_env(database, tmp_path, auth, **extra)).start(stdout=out)
    try:
        assert f"event loop: {loop})" in out.read_text()
        socket = await open_socket(server, auth, "user_loop")
        await socket.send("startComparison", {"prompt": "hello", "providers": ["demo"]})
        events = await socket.until("comparisonComplete")
        assert events[-1]["data"]["status"] == "complete"
        assert any(e["event"] == "modelChunk" for e in events)
    finally:
        server.stop()


def test_serve_refuses_an_unknown_event_loop(database: str, tmp_path: Path) -> None:
    env = server_env(database, tmp_path, PLAYGROUND_EVENT_LOOP="trio")
    done = subprocess.run(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PLAYGROUND_EVENT_LOOP must be one of uvloop, asyncio, not 'trio'" in done.stderr


@pytest.mark.redis
async def test_no_chunk_lost_or_duplicated_for_remote_watchers_under_load(
    database, tmp_path, auth, redis_url
) -> None:
    """Many fast comparisons on one process, each watched from another through Redis."""
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        DEMO_TOKENS_PER_SECOND="500",
        DEMO_FIRST_TOKEN_DELAY="0.3",
        PLAYGROUND_MAX_RUNNING_PER_USER="10",
    )
    first, second = Server(env).start(), Server(env).start()
    prompt = "Stream this back quickly please. " * 40
    models = [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}]
    try:

        async def one(n: int) -> tuple[dict[str, str], dict[str, str], int]:
            user = f"user_load{n % 4}"
            starter = await open_socket(first, auth, user)
            await starter.send("startComparison", {"prompt": f"{n} {prompt}", "models": models})
            sid = (await starter.receive())["data"]["sessionId"]
            watcher = await open_socket(second, auth, user)
            await watcher.send("watchSession", {"sessionId": sid})
            snapshot = await watcher.receive()
            assert snapshot["event"] == "sessionSnapshot", snapshot
            watched = await watcher.until("comparisonComplete", timeout=90)
            started = await starter.until("comparisonComplete", timeout=90, session=sid)
            full = {k: "".join(c["chunk"] for c in v) for k, v in chunks_by_model(started).items()}
            seen = {}
            later = chunks_by_model(watched)
            for model in snapshot["data"]["models"]:
                got = later.get(model["key"], [])
                start = model["nextIndex"]
                assert [c["index"] for c in got] == list(range(start, start + len(got)))
                seen[model["key"]] = model["content"] + "".join(c["chunk"] for c in got)
            relayed = chunks_by_model(started)
            for index_list in relayed.values():
                assert [c["index"] for c in index_list] == list(range(len(index_list)))
            return full, seen, sum(len(v) for v in relayed.values())

        results = await asyncio.gather(*(one(n) for n in range(16)))
        total = 0
        for full, seen, chunks in results:
            assert seen == full
            total += chunks
        assert total > 2_000  # chunks, each relayed twice: to its starter and through Redis
    finally:
        first.stop()
        second.stop()
