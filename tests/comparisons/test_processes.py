"""Real server processes: two daphne instances sharing Redis, SIGKILL recovery, replay commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests import serverfork
from tests.comparisons.test_lifecycle import assert_watched_exactly_once
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ROOT, ProcessAuth, ProcessDatabases, Server, server_env

# Real processes on a slow, busy machine (load 15 on two cores): the first test of a pytest
# process pays the template database's migrate in its setup (161-218 s), a start with its SDK
# preload tens of seconds more; the refused-starts test's call alone took 134-243 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


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


async def warm_up(server: Server, auth: ProcessAuth, upstream: Any, providers: list[str]) -> None:
    """One comparison on ``providers``, start to end, on a server just started: it waits for the
    start-up's SDK preload (a thread: ~2 s of CPU, 40 s and more of a slow, busy machine), which
    the bounds of what a test measures next must not include."""
    upstream.script("warmup", deltas=["ok"])
    socket = await open_socket(server, auth, "user_warmup")
    await socket.send("startComparison", {"prompt": "scenario:warmup", "providers": providers})
    assert (await socket.until("comparisonComplete", timeout=240))[-1]["data"]["status"] == (
        "complete"
    )
    await socket.ws.close()


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


class RedisPair:
    """Two server processes sharing Redis and one database, and their environment."""

    def __init__(self, env: dict[str, str], first: Server, second: Server) -> None:
        self.env, self.first, self.second = env, first, second


@pytest.fixture(scope="module")
def redis_pair(
    process_databases: ProcessDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisPair]:
    """Started once for the module's tests that need no settings of their own (a server start
    is ~1.3 s of CPU): each such test uses its own user, so their comparisons, sessions and
    limits do not meet. Tests that kill, restart or configure a server start their own."""
    from tests.conftest import TEST_REDIS_URL

    tmp = tmp_path_factory.mktemp("redis-pair")
    with process_databases.copy() as database:
        env = demo_env(
            database,
            tmp,
            ProcessAuth(),
            REDIS_URL=TEST_REDIS_URL,
            CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
            PLAYGROUND_MAX_RUNNING_PER_USER="2",  # test_watch_and_limits_... (per user)
        )
        servers: list[Server] = []
        try:
            for _ in range(2):  # each stopped below, even when the second fails to start
                servers.append(Server(env))
                servers[-1].start()
            yield RedisPair(env, *servers)
        finally:
            for server in servers:
                server.stop()


def chunks_by_model(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["event"] == "modelChunk":
            out.setdefault(event["data"]["model"], []).append(event["data"])
    return out


@pytest.mark.redis
async def test_watch_and_limits_across_two_processes_sharing_redis(
    redis_pair: RedisPair, auth: ProcessAuth
) -> None:
    """At most 2 running comparisons per user (the pair's setting), over both processes."""
    first, second = redis_pair.first, redis_pair.second
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

    # A second comparison (as long as the first) fills the limit of 2; a third on the other
    # process, sent as soon as the second is admitted, is refused.
    other = await open_socket(second, auth, "user_two")
    await starter.send("startComparison", {"prompt": prompt, "providers": ["demo"]})
    before += await starter.until("sessionCreated")  # admitted: now 2 are running
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
    return serverfork.run(["manage.py", *args], cwd=str(ROOT), env=env, timeout=120)


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


def assert_snapshots_and_chunks_add_up(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each ``sessionSnapshot`` resets the count: the chunks after it carry ``nextIndex``,
    ``nextIndex + 1``, ... per model (never an index twice). Returns the text after the last."""
    text: dict[str, str] = {}
    expected: dict[str, int] = {}
    for event in events:
        data = event["data"]
        if event["event"] == "sessionSnapshot":
            text = {m["key"]: m["content"] for m in data["models"]}
            expected = {m["key"]: m["nextIndex"] for m in data["models"]}
        elif event["event"] == "modelChunk":
            assert data["index"] == expected[data["model"]], (data, expected)
            expected[data["model"]] += 1
            text[data["model"]] += data["chunk"]
    return text


async def play_recorded(comparison_id: str, speed: str, env: dict[str, str]) -> list[Any]:
    # In a thread: the test reads its watchers meanwhile.
    player = await asyncio.to_thread(
        manage, "replay", comparison_id, "--recorded", "--speed", speed, "--json", env=env
    )
    assert player.returncode == 0, player.stderr
    return list(json.loads(player.stdout))


@pytest.mark.redis
async def test_recorded_replay_reaches_watchers_on_a_server(
    redis_pair: RedisPair, auth: ProcessAuth
) -> None:
    """A recorded replay is a new stream of the comparison's events: it opens with its own
    snapshot (nothing played, ``nextIndex`` 0), so a watcher that already has the final snapshot
    (``nextIndex`` N) never sees an index twice; a watcher that joins mid-replay gets none of it."""
    # The commands run beside the pair's first server (its database and Redis prefix).
    env = {**redis_pair.env, "DEMO_TOKENS_PER_SECOND": "400"}
    made = json.loads(
        manage(
            "compare", "Replay me", "--models", "demo", "--user", "user_rec", "--json", env=env
        ).stdout
    )
    content = made["responses"]["demo-echo"]["content"]
    server = redis_pair.first
    watcher = await open_socket(server, auth, "user_rec")
    await watcher.send("watchSession", {"sessionId": made["id"]})
    final = await watcher.until("comparisonComplete")
    assert [e["event"] for e in final] == ["sessionSnapshot", "comparisonComplete"]
    [model] = final[0]["data"]["models"]
    assert model["nextIndex"] > 0 and model["content"] == content

    replaying = asyncio.create_task(play_recorded(made["id"], "0.5", env))
    opening = await watcher.receive(timeout=30)
    assert opening["event"] == "sessionSnapshot"
    assert opening["data"]["status"] == "streaming" and opening["data"]["replay"] is True
    assert [(m["nextIndex"], m["content"]) for m in opening["data"]["models"]] == [(0, "")]
    started = await watcher.until("modelChunk")
    late = await open_socket(server, auth, "user_rec")  # joins mid-replay
    await late.send("watchSession", {"sessionId": made["id"]})
    late_events = await late.until("comparisonComplete")
    events = final + [opening, *started] + await watcher.until("comparisonComplete", timeout=60)
    printed = await replaying
    assert printed[0] == opening
    assert assert_snapshots_and_chunks_add_up(events) == {"demo-echo": content}
    assert [e["event"] for e in events].count("comparisonComplete") == 2
    assert [e["event"] for e in late_events] == ["sessionSnapshot", "comparisonComplete"]

    # The next replay reaches both, each from its opening snapshot.
    await play_recorded(made["id"], "10", env)
    for socket in (watcher, late):
        again = await socket.until("comparisonComplete", timeout=60)
        assert again[0]["event"] == "sessionSnapshot" and again[0]["data"]["replay"] is True
        assert assert_snapshots_and_chunks_add_up(again) == {"demo-echo": content}


async def test_serve_closes_an_oversized_frame_with_1009_and_answers_big_heads_with_json(
    database, tmp_path, auth
) -> None:
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
        from tests.comparisons.test_launchers import assert_oversized_heads_get_json_errors

        assert_oversized_heads_get_json_errors(server)
    finally:
        server.stop()


@pytest.mark.parametrize(("choice", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_serve_runs_on_the_chosen_event_loop(
    choice: str | None, loop: str, database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    """uvloop unless PLAYGROUND_EVENT_LOOP says asyncio; the banner names it; both stream."""
    extra = {"PLAYGROUND_EVENT_LOOP": choice} if choice else {}
    out = tmp_path / "serve.out"
    # Forked: the fork server imported uvloop and asyncio but set no loop policy and made no
    # loop (daphne.server, which makes it, is checked absent in every child), so manage.py makes
    # the choice in the child as in a fresh interpreter, and the banner reads the running loop.
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
        timeout=240,
    )
    assert done.returncode != 0
    assert "PLAYGROUND_EVENT_LOOP must be one of uvloop, asyncio, not 'trio'" in done.stderr


@pytest.mark.redis
async def test_no_chunk_lost_or_duplicated_for_remote_watchers_under_load(
    database, tmp_path, auth, redis_url
) -> None:
    """Many fast comparisons on one process, each watched from another through Redis.

    Each watcher is connected before its comparison starts and asks right after
    ``sessionCreated``; whether its snapshot is still streaming or already final, snapshot +
    later events hold every chunk exactly once and end with one ``comparisonComplete``."""
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        DEMO_TOKENS_PER_SECOND="500",
        DEMO_FIRST_TOKEN_DELAY="1.0",
        PLAYGROUND_MAX_RUNNING_PER_USER="10",
    )
    first, second = Server(env).start(), Server(env).start()
    prompt = "Stream this back quickly please. " * 40
    models = [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}]
    try:

        async def one(n: int) -> tuple[int, int]:
            user = f"user_load{n % 4}"
            starter = await open_socket(first, auth, user)
            watcher = await open_socket(second, auth, user)
            await starter.send("startComparison", {"prompt": f"{n} {prompt}", "models": models})
            sid = (await starter.receive())["data"]["sessionId"]
            await watcher.send("watchSession", {"sessionId": sid})
            snapshot = await watcher.receive()
            assert snapshot["event"] == "sessionSnapshot", snapshot
            watched = await watcher.until("comparisonComplete", timeout=90)
            started = await starter.until("comparisonComplete", timeout=90, session=sid)
            relayed = chunks_by_model(started)
            for index_list in relayed.values():
                assert [c["index"] for c in index_list] == list(range(len(index_list)))
            full = {k: "".join(c["chunk"] for c in v) for k, v in relayed.items()}
            crossed = assert_watched_exactly_once(snapshot["data"], watched, full)
            with pytest.raises(TimeoutError):  # nothing after the end marker
                await watcher.receive(timeout=0.2)
            return sum(len(v) for v in relayed.values()), crossed

        results = await asyncio.gather(*(one(n) for n in range(16)))
        assert sum(chunks for chunks, _ in results) > 2_000
        # Chunks relayed through Redis to the other process, as live events (not snapshots).
        assert sum(crossed for _, crossed in results) > 1_000
    finally:
        first.stop()
        second.stop()


async def test_refused_starts_reach_no_provider_across_two_processes(
    database, tmp_path, auth, fake_upstream
) -> None:
    """Two server processes share the database; upstream requests are counted at the fake
    upstream. A burst of 30 sockets x 6 models over both opens requests for the 3 admitted
    starts only; once the user is at a limit on one process, starts on the other open none."""
    upstream = fake_upstream
    # 30 s answers: the admitted three must still be running when the last of the burst's starts
    # is decided and through the next phase, however slow a busy machine makes the starts.
    upstream.script("burst", deltas=[f"w{i} " for i in range(100)], delay=0.3)
    upstream.script("over", deltas=[f"w{i} " for i in range(100)], delay=0.05)
    upstream.script("quick", deltas=["ok"])
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        ANTHROPIC_API_KEY=TEST_API_KEY,
        ANTHROPIC_BASE_URL=upstream.url,
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=upstream.url,
        PLAYGROUND_MAX_RUNNING_PER_USER="3",
        PLAYGROUND_MAX_STARTS_PER_MINUTE="4",
    )
    first, second = Server(env).start(), Server(env).start()
    six = [{"provider": "google"}, {"provider": "anthropic"}] * 3
    try:
        # Each burst start waited for its process's SDK preload otherwise (run1.log: a reply
        # not within 30 s): the burst's replies measure admission only.
        await asyncio.gather(
            *(warm_up(s, auth, upstream, ["google", "anthropic"]) for s in (first, second))
        )
        sockets = [
            await open_socket(first if n % 2 else second, auth, "user_burst") for n in range(30)
        ]
        await asyncio.gather(
            *(
                s.send("startComparison", {"prompt": "scenario:burst", "models": six})
                for s in sockets
            )
        )
        replies = [await s.receive(timeout=30) for s in sockets]
        admitted = [
            s for s, r in zip(sockets, replies, strict=True) if r["event"] == "sessionCreated"
        ]
        refusals = [r for r in replies if r["event"] == "error"]
        assert len(admitted) == 3 and len(refusals) == 27
        assert all("limit 3" in r["data"]["message"] for r in refusals)
        for socket in admitted:
            await socket.until("modelChunk")

        # At the running limit (3 running over both processes): 5 more starts on each refused.
        for server in (first, second):
            late = await open_socket(server, auth, "user_burst")
            for _ in range(5):
                await late.send("startComparison", {"prompt": "scenario:over", "models": six})
                assert "limit 3" in (await late.until("error"))[-1]["data"]["message"]

        # At the per-minute limit (4 starts): a fourth start is admitted, five more refused.
        rate = await open_socket(first, auth, "user_rate")
        for _ in range(4):
            await rate.send(
                "startComparison", {"prompt": "scenario:quick", "providers": ["google"]}
            )
            assert (await rate.until("comparisonComplete"))[0]["event"] == "sessionCreated"
        other = await open_socket(second, auth, "user_rate")
        for _ in range(5):
            await other.send("startComparison", {"prompt": "scenario:over", "models": six})
            assert "limit 4" in (await other.until("error"))[-1]["data"]["message"]

        # An admitted start of another user on each process, start to end: a request that a
        # refused start had opened would have reached the upstream long before.
        for server in (first, second):
            barrier = await open_socket(server, auth, "user_barrier")
            await barrier.send(
                "startComparison", {"prompt": "scenario:quick", "providers": ["google"]}
            )
            await barrier.until("comparisonComplete")
        assert len(upstream.requests_for("quick")) == 6
        assert len(upstream.requests_for("burst")) == 18
        assert upstream.requests_for("over") == []
    finally:
        first.stop()
        second.stop()


@pytest.mark.redis
async def test_follow_up_turns_reach_watchers_in_another_process(
    redis_pair: RedisPair, auth: ProcessAuth
) -> None:
    """A follow-up sent on one process runs there; a socket of the other process that watched
    the comparison gets the turn live (through Redis), each chunk once; a follow-up sent on the
    second process while the first still runs the turn is refused."""
    first, second = redis_pair.first, redis_pair.second
    starter = await open_socket(first, auth, "user_turns")
    models = [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}]
    await starter.send("startComparison", {"prompt": "Relays?", "models": models})
    sid = (await starter.receive(timeout=60))["data"]["sessionId"]
    await starter.until("comparisonComplete", timeout=60)

    watcher = await open_socket(second, auth, "user_turns")
    await watcher.send("watchSession", {"sessionId": sid})
    await watcher.until("comparisonComplete", timeout=30)  # saved state + end marker

    await starter.send("sendFollowUp", {"sessionId": sid, "prompt": "And switches? " * 5})
    opened = await starter.until("modelChunk")
    assert opened[0]["event"] == "turnStarted"
    # The turn runs on the first process: the second refuses a follow-up meanwhile.
    await watcher.send("sendFollowUp", {"sessionId": sid, "prompt": "too soon"})
    ran = opened + await starter.until("comparisonComplete", timeout=60)
    seen = await watcher.until("comparisonComplete", timeout=60)
    refusal = [e for e in seen if e["event"] == "error"]
    assert refusal and "is still answering" in refusal[0]["data"]["message"]
    live = [e for e in seen if e["event"] != "error"]
    assert live[0]["event"] == "turnStarted" and live[0]["data"]["turn"] == 1
    assert [e["event"] for e in live] == [e["event"] for e in ran]
    assert chunks_by_model(live) == chunks_by_model(ran)
    assert live[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}

    saved = rest(second, auth, "user_turns", f"/sessions/{sid}")
    texts = {k: "".join(c["chunk"] for c in v) for k, v in chunks_by_model(ran).items()}
    assert {k: v["content"] for k, v in saved["turns"][1]["responses"].items()} == texts


class SharedPortServer(Server):
    """``manage.py serve --reuse-port``: several of these share one port."""

    def args(self) -> list[str]:
        return ["manage.py", "serve", "--reuse-port"]

    def launch(self, stdout: Path) -> SharedPortServer:
        self.stdout = stdout
        self.stderr = stdout.with_suffix(".log")
        with open(stdout, "wb") as out, open(self.stderr, "wb") as err:
            if self.forked():
                self.process = serverfork.ForkedProcess(
                    self.args(), env=self.env, cwd=str(ROOT), stdout=out, stderr=err
                )
            else:
                self.process = subprocess.Popen(
                    [sys.executable, *self.args()], cwd=ROOT, env=self.env, stdout=out, stderr=err
                )
        return self

    def wait_listening(self, timeout: float = 90.0) -> None:
        # The port may answer already (another process holds it): wait for this one's banner,
        # printed once its own socket listens.
        assert self.process is not None and self.stdout is not None
        deadline = time.monotonic() + timeout
        while "SO_REUSEPORT" not in self.stdout.read_text():
            assert self.process.poll() is None, f"server exited: {self.log()[-2000:]}"
            assert time.monotonic() < deadline, "server did not listen in time"
            time.sleep(0.1)


@pytest.mark.redis
async def test_two_serve_processes_share_one_port_with_reuse_port(
    database, tmp_path, auth, redis_url
) -> None:
    """Both processes take connections on the one port; when one stops, its sockets close and
    the other's keep streaming, and the port still answers."""
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis_url,
        CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
    )
    first = SharedPortServer(env).launch(tmp_path / "first.out")
    second = SharedPortServer(env, port=first.port).launch(tmp_path / "second.out")
    try:
        # Started side by side: each process's start-up is seconds of CPU.
        first.wait_listening()
        second.wait_listening()
        # Connections are hashed over the two listeners: 24 sockets all on one process would
        # happen once in 2**23 runs.
        sockets = [await open_socket(first, auth, f"user_shared_{i}") for i in range(24)]
        first.stop()
        closed, alive = [], []
        for socket in sockets:
            # A probe every socket answers while its process lives: an unknown session is a 404.
            try:
                await socket.send("watchSession", {"sessionId": str(uuid.uuid4())})
                answer = await socket.receive(timeout=15)
            except websockets.ConnectionClosed:
                closed.append(socket)
                continue
            assert answer["event"] == "error", answer
            alive.append(socket)
        assert closed and alive, (len(closed), len(alive))
        await alive[0].send("startComparison", {"prompt": "hello", "providers": ["demo"]})
        events = await alive[0].until("comparisonComplete")
        assert events[-1]["data"]["status"] == "complete"
        fresh = await open_socket(second, auth, "user_shared_after")
        await fresh.ws.close()
    finally:
        first.stop()
        second.stop()
