"""The application owns its process start-up, whatever launches it.

``daphne playground.asgi:application`` (no ``manage.py serve``) must recover a killed server's
comparisons and close oversized frames with 1009; importing ``playground.asgi`` must leave the
importing process alone, and the start-up must run on ASGI lifespan where a server sends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.comparisons.test_processes import demo_env, open_socket, rest
from tests.servers import ROOT, ProcessAuth, Server, process_database

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class PlainDaphne(Server):
    """``daphne playground.asgi:application``, as deployments launch it."""

    def args(self) -> list[str]:
        return [
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "playground.asgi:application",
        ]


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with process_database(tmp_path) as url:
        yield url


async def assert_closed_with_1009(server: Server, auth: ProcessAuth, size: int) -> None:
    socket = await open_socket(server, auth, "user_big")
    await socket.send("startComparison", {"prompt": "y" * size, "providers": ["demo"]})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await socket.receive()
    assert closed.value.rcvd is not None, "dropped without a close frame"
    assert closed.value.rcvd.code == 1009


async def test_plain_daphne_recovers_a_killed_servers_comparison_and_closes_big_frames_with_1009(
    database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    env = demo_env(
        database,
        tmp_path,
        auth,
        DEMO_TOKENS_PER_SECOND="15",
        PLAYGROUND_FLUSH_INTERVAL="0.2",
        PLAYGROUND_HEARTBEAT_STALE_SECONDS="2",
        WS_MAX_FRAME_BYTES="65536",
    )
    server = PlainDaphne(env).start()
    try:
        socket = await open_socket(server, auth, "user_crash")
        await socket.send(
            "startComparison", {"prompt": "A long answer " * 3, "providers": ["demo"]}
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
    restarted = PlainDaphne(env, port=server.port).start()
    try:
        for _ in range(150):
            saved = rest(restarted, auth, "user_crash", f"/sessions/{sid}")
            if saved["status"] != "streaming":
                break
            await asyncio.sleep(0.1)
        assert saved["status"] == "interrupted"
        [response] = saved["responses"].values()
        assert response["status"] == "interrupted"
        assert response["content"] and received.startswith(response["content"])

        # Over WS_MAX_FRAME_BYTES but under daphne's own limit (1 MiB): reaches no application.
        await assert_closed_with_1009(restarted, auth, 70_000)
        # Over daphne's own limit: a close frame too, not a dropped connection.
        await assert_closed_with_1009(restarted, auth, 2 * 1024 * 1024)
        assert rest(restarted, auth, "user_big", "/sessions") == []
    finally:
        restarted.stop()


LIFESPAN = """
import asyncio, gc, json, sys, threading
import sniffio

def state():
    return {
        "frozen": gc.get_freeze_count(),
        "sdks": sorted(m for m in ("anthropic", "google.genai") if m in sys.modules),
        "sniffio": sniffio.thread_local.name or sniffio.current_async_library_cvar.get(),
        "sweeper": any(t.name == "comparison-sweeper" for t in threading.enumerate()),
    }

from playground.asgi import application
imported = state()

async def lifespan():
    inbox = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    inbox.put_nowait({"type": "lifespan.shutdown"})
    sent = []
    async def send(message):
        sent.append(message["type"])
    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent, state(), len(gc.get_objects())

sent, started, unfrozen = asyncio.run(lifespan())
print(json.dumps({"imported": imported, "sent": sent, "started": started, "unfrozen": unfrozen}))
"""


def test_importing_the_application_changes_nothing_and_lifespan_starts_the_process(
    tmp_path: Path,
) -> None:
    """Tests and tools import ``playground.asgi``: their heap is not frozen, no SDK is loaded.
    A server that sends ``lifespan.startup`` gets the whole start-up before its first request."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "CRITICAL"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", LIFESPAN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] == {"frozen": 0, "sdks": [], "sniffio": None, "sweeper": False}
    assert result["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    started = result["started"]
    assert started["sdks"] == ["anthropic", "google.genai"]
    assert started["sniffio"] == "asyncio" and started["sweeper"]
    assert started["frozen"] > 100_000 and result["unfrozen"] < 10_000
