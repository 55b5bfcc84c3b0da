"""The seed's own frontend client: Node's socket.io-client 4.x (pinned in package-lock.json),
connecting exactly as the seed does (``io(url, {auth: {token}})``, default options), against real
server processes (development and production mode; two processes sharing Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.comparisons.test_processes import assert_snapshots_and_chunks_add_up, demo_env, rest
from tests.conftest import REQUIRE_SERVICES
from tests.servers import ProcessAuth, ProcessDatabases, Server
from tests.socketio.clients import SioClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "seed_client.mjs"
MODES = ["default", "websocket", "polling"]
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k3J9-vQ2_mZ8pL5xW1nR7tY4bH6cF0dS9aE2gU8iO3-Lr5Tq7Wz1Xc4Vb8Nm2",
    "ALLOWED_HOSTS": "127.0.0.1",
    # Plain HTTP here (TLS would end at a proxy); REST would otherwise redirect to https.
    "DJANGO_SECURE_SSL_REDIRECT": "0",
}


@pytest.fixture(scope="session")
def node() -> str:
    """Node with the pinned socket.io-client installed (``npm ci``, once per session)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if REQUIRE_SERVICES:
            pytest.fail("REQUIRE_SERVICES=1 but node/npm are not installed", pytrace=False)
        pytest.skip("node and npm are needed for the socket.io-client compatibility tests")
    # `npm ci` (~3 s of CPU, 20 s on a busy machine) only when the lock changed since the last
    # install: the stamp holds the package-lock.json that node_modules was installed from.
    lock = (HERE / "package-lock.json").read_text()
    stamp = HERE / "node_modules" / ".installed-lock.json"
    if not (stamp.exists() and stamp.read_text() == lock):
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        stamp.write_text(lock)
    return node


@pytest.fixture(scope="module")
def auth() -> ProcessAuth:
    return ProcessAuth()


@pytest.fixture(scope="module", params=["development", "production"])
def server(
    request: pytest.FixtureRequest,
    process_databases: ProcessDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    auth: ProcessAuth,
) -> Iterator[Server]:
    """``make run`` (DEBUG, offline demo provider) and a production-mode server."""
    tmp = tmp_path_factory.mktemp("seed")
    extra = PRODUCTION if request.param == "production" else {}
    with process_databases.copy() as database:
        env = demo_env(database, tmp, auth, DEMO_TOKENS_PER_SECOND="200", **extra)
        server = Server(env).start()
        try:
            yield server
        finally:
            server.stop()


def _command(node: str, url: str, mode: str, action: str, *args: str) -> list[str]:
    return [node, str(SCRIPT), url, mode, action, *args]


def _env(token: str | None) -> dict[str, str]:
    env = dict(os.environ, SEED_TIMEOUT_MS="60000")
    env.pop("SEED_TOKEN", None)
    if token is not None:
        env["SEED_TOKEN"] = token
    return env


class SeedClients:
    """One Node process (``seed_client.mjs --batch``) running the tests' seed clients one after
    another, each on a socket of its own: a Node start with socket.io-client costs ~0.2 s of
    CPU, and this module ran 22 of them."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.process = self._start()

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.pop("SEED_TOKEN", None)
        return subprocess.Popen(
            [self.node, str(SCRIPT), "--batch"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, url: str, mode: str, action: str, *args: str, token: str | None
    ) -> list[dict[str, Any]]:
        """Run the seed client to its end; its events, one per printed line."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"url": url, "mode": mode, "action": action, "args": list(args)}
        self.process.stdin.write(json.dumps({**request, "token": token, "timeoutMs": 60000}))
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        events: list[dict[str, Any]] = []
        # The action's own 60 s timeout ends it (exit code 2); the test's timeout bounds a hang.
        try:
            for line in self.process.stdout:
                event = json.loads(line)
                if "end" in event:
                    break
                events.append(event)
            else:
                raise AssertionError(f"the seed client process exited: {events}")
        except BaseException:
            # Interrupted mid-run (a test's timeout): the next run gets a new process, not
            # the rest of this one's lines.
            self.process.kill()
            self.process.wait()
            self.process = self._start()
            raise
        assert event["end"] == 0, events
        return events

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def seed(node: str) -> Iterator[SeedClients]:
    clients = SeedClients(node)
    try:
        yield clients
    finally:
        clients.close()


@pytest.mark.parametrize("mode", MODES)
def test_the_seed_client_streams_a_two_model_comparison(seed, server, auth, mode) -> None:
    user = f"user_seed_{mode}"
    events = seed.run(
        server.url, mode, "start", "What is a relay?", "demo", "demo", token=auth.token(user)
    )
    names = [e["event"] for e in events]
    assert "connect" in names and "error" not in names, events
    transports = {e["data"]["transport"] for e in events if e["event"] in ("connect", "upgrade")}
    if mode == "default":  # polling, upgraded before or after connect (see the next test)
        assert transports <= {"polling", "websocket"}
    else:
        assert transports == {mode}
    created = next(e["data"] for e in events if e["event"] == "sessionCreated")
    sid = created["sessionId"]
    assert [m["key"] for m in created["models"]] == ["demo-echo", "demo-echo#2"]
    assert events[-1] == {
        "event": "comparisonComplete",
        "data": {"sessionId": sid, "status": "complete"},
    }
    chunks: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["event"] == "modelChunk":
            chunks.setdefault(e["data"]["model"], []).append(e["data"])
    assert set(chunks) == {"demo-echo", "demo-echo#2"}
    for items in chunks.values():
        assert [c["index"] for c in items] == list(range(len(items)))
    complete = [e["data"] for e in events if e["event"] == "modelComplete"]
    assert len(complete) == 2 and all(c["metrics"]["tokensUsed"] > 0 for c in complete)
    statuses = [e["data"]["status"] for e in events if e["event"] == "modelStatus"]
    assert statuses.count("streaming") == 2 and statuses.count("complete") == 2
    saved = rest(server, auth, user, f"/sessions/{sid}")
    for key, items in chunks.items():
        assert saved["responses"][key]["content"] == "".join(c["chunk"] for c in items)


def test_node_socketio_client_sends_follow_ups(seed, server, auth) -> None:
    """Node's socket.io-client sends ``sendFollowUp`` and ``continueFrom`` (acknowledged with the
    turn) and gets each turn's events with ``turn``; another user's follow-up is not found."""
    user = "user_seed_turns"
    token = auth.token(user)
    events = seed.run(server.url, "websocket", "start", "Relays?", "demo", token=token)
    sid = next(e["data"] for e in events if e["event"] == "sessionCreated")["sessionId"]
    for turn, args in (
        (1, ("followup", sid, "And switches?")),
        (2, ("continue", sid, "demo-echo", "Summarise.")),
    ):
        events = seed.run(server.url, "default", *args, token=token)
        names = [e["event"] for e in events]
        assert {"event": "ack", "data": {"sessionId": sid, "turn": turn}} in events, events
        assert "error" not in names and "turnStarted" in names, events
        started = next(e["data"] for e in events if e["event"] == "turnStarted")
        assert started["turn"] == turn and started["prompt"] == args[-1]
        text = "".join(e["data"]["chunk"] for e in events if e["event"] == "modelChunk")
        assert args[-1] in text and f"follows {turn} earlier exchange" in text
        assert all(e["data"]["turn"] == turn for e in events if e["event"].startswith("model"))
        assert events[-1] == {
            "event": "comparisonComplete",
            "data": {"sessionId": sid, "status": "complete", "turn": turn},
        }
    saved = rest(server, auth, user, f"/sessions/{sid}")
    assert [t["prompt"] for t in saved["turns"]] == ["Relays?", "And switches?", "Summarise."]
    other = seed.run(
        server.url,
        "websocket",
        "followup",
        sid,
        "mine?",
        token=auth.token("user_seed_other"),
    )
    assert {"event": "ack", "data": {"error": f"Session {sid} not found"}} in other


def test_the_seed_clients_default_connection_upgrades_to_websocket(seed, server, auth) -> None:
    """The client's default: HTTP long-polling first, then the upgrade (often before the
    Socket.IO ``connect`` event already)."""
    events = seed.run(server.url, "default", "upgrade", token=auth.token("user_up"))
    assert events[-1] == {"event": "upgrade", "data": {"transport": "websocket"}}
    assert "connect_error" not in [e["event"] for e in events]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("token", "code"), [(None, "token-missing"), ("bad", "token-malformed")])
def test_the_seed_client_gets_connect_error_with_the_code(seed, server, mode, token, code) -> None:
    events = seed.run(server.url, mode, "connect", token=token)
    error = next(e["data"] for e in events if e["event"] == "connect_error")
    assert error["data"] == {"code": code} and error["message"]
    assert "connect" not in [e["event"] for e in events]


@pytest.mark.redis
async def test_a_seed_client_on_another_process_watches_and_cancels_through_redis(
    node, process_databases, tmp_path, redis_url
) -> None:
    """Started by a Socket.IO client on one process, watched by the seed client on another,
    cancelled from that other process: all through the Channels layer on Redis."""
    auth = ProcessAuth()
    with process_databases.copy() as database:
        env = demo_env(
            database,
            tmp_path,
            auth,
            REDIS_URL=redis_url,
            CHANNEL_LAYER_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        )
        first, second = Server(env).start(), Server(env).start()
        try:
            await _watch_and_cancel(node, first, second, auth)
        finally:
            first.stop()
            second.stop()


async def _watch_and_cancel(node: str, first: Server, second: Server, auth: ProcessAuth) -> None:
    user = "user_redis"
    starter = await SioClient().connect(first.url, token=auth.token(user))
    await starter.receive()
    long = {"prompt": "Tell me about relays " * 30, "providers": ["demo", "demo"]}
    sid = (await starter.call("startComparison", long))["sessionId"]
    await starter.until("modelChunk")

    watcher = await asyncio.create_subprocess_exec(
        *_command(node, second.url, "default", "watch", sid),
        env=_env(auth.token(user)),
        stdout=asyncio.subprocess.PIPE,
    )
    assert watcher.stdout is not None
    watched: list[dict[str, Any]] = []
    canceller = await SioClient().connect(second.url, token=auth.token(user))
    try:
        async with asyncio.timeout(60):
            while not any(e["event"] == "modelChunk" for e in watched):
                watched.append(json.loads(await watcher.stdout.readline()))
            await canceller.emit("cancelComparison", {"sessionId": sid})
            async for line in watcher.stdout:
                watched.append(json.loads(line))
            assert await watcher.wait() == 0
    finally:
        if watcher.returncode is None:
            watcher.kill()
        await canceller.close()
    snapshots = [e for e in watched if e["event"] == "sessionSnapshot"]
    assert len(snapshots) == 1 and snapshots[0]["data"]["status"] == "streaming"
    assert watched[-1] == {
        "event": "comparisonComplete",
        "data": {"sessionId": sid, "status": "cancelled"},
    }
    text = assert_snapshots_and_chunks_add_up(watched)

    started = await starter.until("comparisonComplete", session=sid)
    await starter.close()
    assert started[-1]["data"]["status"] == "cancelled"
    for _ in range(50):
        saved = rest(second, auth, user, f"/sessions/{sid}")
        if saved["status"] != "streaming":
            break
        await asyncio.sleep(0.1)
    assert {k: v["content"] for k, v in saved["responses"].items()} == text
