"""Outages of the services a server depends on, mid-stream, against real server processes:
the run finishes and saves everything, and ``comparisonComplete`` means it is saved."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from tests.comparisons.test_launchers import forward
from tests.comparisons.test_lifecycle import assert_watched_exactly_once
from tests.comparisons.test_processes import chunks_by_model, demo_env, open_socket, rest
from tests.servers import ProcessAuth, Server, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


class CuttableRelay:
    """A TCP relay to ``host:port`` that can be cut (connections closed, new ones refused) and
    restored on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(forward(reader, up_writer), forward(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.listen_port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()


def drain_stderr(server: Server, path: Path) -> None:
    """Keep the server's stderr pipe from filling up (outages are logged) into ``path``."""
    pipe = server.process.stderr if server.process else None
    if pipe is not None:

        def copy() -> None:
            with open(path, "wb") as out:
                shutil.copyfileobj(pipe, out, 1)

        threading.Thread(target=copy, daemon=True).start()


def sessions_text(events: list[dict[str, Any]]) -> dict[str, str]:
    return {k: "".join(c["chunk"] for c in v) for k, v in chunks_by_model(events).items()}


@pytest.mark.postgres
async def test_a_database_cut_mid_stream_delays_complete_until_everything_is_saved(
    database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    real = urllib.parse.urlsplit(database)
    assert real.hostname and real.port
    relay = CuttableRelay(real.hostname, real.port)
    await relay.restore()
    userinfo = real.netloc.rpartition("@")[0]
    relayed = real._replace(netloc=f"{userinfo}@127.0.0.1:{relay.listen_port}").geturl()
    env = demo_env(
        relayed,
        tmp_path,
        auth,
        DEMO_TOKENS_PER_SECOND="30",
        PLAYGROUND_FLUSH_INTERVAL="0.2",
        # Shorter than the cut: the sweeper marks the run interrupted once the database is back,
        # and the run's final save must still win (its process is alive).
        PLAYGROUND_HEARTBEAT_STALE_SECONDS="1.5",
    )
    server = Server(env).start()
    drain_stderr(server, tmp_path / "server.log")
    try:
        socket = await open_socket(server, auth, "user_cut")
        await socket.send(
            "startComparison",
            {"prompt": "Tell me a long story " * 4, "providers": ["demo", "demo"]},
        )
        created = await socket.receive()
        assert created["event"] == "sessionCreated", created
        sid = created["data"]["sessionId"]
        events = await socket.until("modelChunk")
        await relay.cut()
        # Every model ends while the database is unreachable ...
        ended: set[str] = set()
        while len(ended) < 2:
            event = await socket.receive(timeout=30)
            events.append(event)
            assert event["event"] != "comparisonComplete", "complete before anything was saved"
            if event["event"] == "modelStatus" and event["data"]["status"] != "streaming":
                ended.add(event["data"]["model"])
        # ... and nothing says complete while it stays unreachable.
        with contextlib.suppress(TimeoutError):
            event = await socket.receive(timeout=3)
            pytest.fail(f"{event['event']} while the database was unreachable")
        await relay.restore()
        events += await socket.until("comparisonComplete", timeout=60)
        assert events[-1]["data"] == {"sessionId": sid, "status": "complete"}
        saved = await asyncio.to_thread(rest, server, auth, "user_cut", f"/sessions/{sid}")
        assert saved["status"] == "complete"
        streamed = sessions_text(events)
        assert {k: v["content"] for k, v in saved["responses"].items()} == streamed
        assert {v["status"] for v in saved["responses"].values()} == {"complete"}
    finally:
        server.stop()
        await relay.cut()


class PrivateRedis:
    """A redis-server of this test's own (the machine's shared one must not be killed)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self._dir,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


async def test_a_redis_outage_mid_stream_neither_closes_sockets_nor_spoils_runs(
    database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = demo_env(
        database,
        tmp_path,
        auth,
        REDIS_URL=redis.url,
        # About 12 s of answer: it outlasts the outage and the re-join that follows it.
        DEMO_TOKENS_PER_SECOND="10",
        PLAYGROUND_FLUSH_INTERVAL="0.2",
    )
    server = Server(env).start()
    drain_stderr(server, tmp_path / "server.log")
    other = Server(env).start()
    drain_stderr(other, tmp_path / "other.log")
    try:
        socket_ = await open_socket(server, auth, "user_redis")
        await socket_.send(
            "startComparison",
            {"prompt": "Tell me a long story " * 20, "providers": ["demo", "demo"]},
        )
        created = await socket_.receive()
        assert created["event"] == "sessionCreated", created
        sid = created["data"]["sessionId"]
        events = await socket_.until("modelChunk")
        redis.kill()
        # Mid-stream, without the layer: the socket stays open and the chunks keep coming.
        while len(chunks_by_model(events).get(created["data"]["models"][0]["key"], [])) < 10:
            events.append(await socket_.receive(timeout=30))
            assert events[-1]["event"] != "comparisonComplete"
        redis.start()
        # The restarted Redis knows no groups: the run's process re-joins its group ...
        client = redis_client.Redis(port=redis.port)
        try:
            for _ in range(600):
                if client.keys(f"*group:run.{sid}"):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the run never re-joined its group")
        finally:
            client.close()
        # ... so a socket on another process watches it live (a streaming snapshot comes only
        # from the running process).
        watcher = await open_socket(other, auth, "user_redis")
        await watcher.send("watchSession", {"sessionId": sid})
        watched = await watcher.until("comparisonComplete", timeout=60)
        assert watched[0]["event"] == "sessionSnapshot", watched[0]
        # Live from the running process, or (on a slow machine, the answer already over) the
        # saved state: either way each chunk exactly once (the re-join is proven above).
        assert watched[0]["data"]["status"] in ("streaming", "complete")
        assert watched[-1]["data"] == {"sessionId": sid, "status": "complete"}
        events += await socket_.until("comparisonComplete", timeout=60)
        assert events[-1]["data"] == {"sessionId": sid, "status": "complete"}
        streamed = sessions_text(events)
        assert_watched_exactly_once(watched[0]["data"], watched[1:], streamed)
        saved = await asyncio.to_thread(rest, server, auth, "user_redis", f"/sessions/{sid}")
        assert saved["status"] == "complete"
        assert {k: v["content"] for k, v in saved["responses"].items()} == streamed

        # After the layer returned, a new start works (and leaves no orphan row).
        await socket_.send("startComparison", {"prompt": "again", "providers": ["demo"]})
        again = await socket_.until("comparisonComplete", timeout=60)
        assert again[0]["event"] == "sessionCreated", again[0]
        assert again[-1]["data"]["status"] == "complete"
        listed = await asyncio.to_thread(rest, server, auth, "user_redis", "/sessions")
        assert len(listed) == 2
        assert {item["status"] for item in listed} == {"complete"}
    finally:
        server.stop()
        other.stop()
        redis.kill()
