"""Real servers (`manage.py serve`, plain daphne): the frame limit (`WS_MAX_FRAME_BYTES`) applies to what clients send,
never to what the server sends, so a snapshot of any size arrives whole."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import websockets

from tests.comparisons.test_launchers import PlainDaphne
from tests.comparisons.test_processes import open_socket, rest
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ProcessAuth, Server, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: 500 deltas of 200 CJK characters: 300 KB of UTF-8, 600 KB as ASCII-escaped JSON; either way
#: over the default 256 KiB inbound limit.
DELTAS = [f"{i:03d}" + "模型输出测试文本" * 25 for i in range(500)]
ANSWER = "".join(DELTAS)


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


class PlainDaphneWebSocketFirst(PlainDaphne):
    """``daphne playground.asgi:application`` whose first connection is a WebSocket: daphne's
    limits are applied on the first connection, so this one connected before them."""

    def start(
        self, timeout: float = 30.0, stdout: Path | None = None, stderr: Path | None = None
    ) -> Server:
        with open(os.devnull, "wb") as devnull:
            self.process = self.spawn(devnull, devnull)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daphne did not listen in time")


@pytest.mark.parametrize("launcher", [Server, PlainDaphneWebSocketFirst])
async def test_watchers_of_a_large_comparison_get_the_whole_snapshot_live_and_finished(
    launcher, database, tmp_path, auth, fake_upstream
) -> None:
    fake_upstream.script("big", deltas=DELTAS, stall_after=len(DELTAS))
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=fake_upstream.url,
        PROVIDER_IDLE_TIMEOUT="90",  # live (stalled after the last delta) until cancelled
    )
    server = launcher(env).start()
    try:
        starter = await open_socket(server, auth, "user_big")
        await starter.send("startComparison", {"prompt": "scenario:big", "providers": ["google"]})
        sid = (await starter.receive())["data"]["sessionId"]
        received = ""
        while len(received) < len(ANSWER):
            event = await starter.receive()
            if event["event"] == "modelChunk":
                received += event["data"]["chunk"]
        assert received == ANSWER

        # A watcher joining the running comparison: its snapshot holds the whole answer so far.
        live = await open_socket(server, auth, "user_big")
        await live.send("watchSession", {"sessionId": sid})
        snapshot = await live.receive(timeout=30)
        assert snapshot["event"] == "sessionSnapshot"
        assert snapshot["data"]["status"] == "streaming"
        [model] = snapshot["data"]["models"]
        assert (model["content"], model["nextIndex"]) == (ANSWER, len(DELTAS))

        await starter.send("cancelComparison", {"sessionId": sid})
        for watcher in (starter, live):
            assert (await watcher.until("comparisonComplete"))[-1]["data"]["status"] == "cancelled"

        # Watching the finished comparison: the saved snapshot, whole, then the end marker.
        await starter.send("watchSession", {"sessionId": sid})
        saved = await starter.until("comparisonComplete")
        assert [e["event"] for e in saved] == ["sessionSnapshot", "comparisonComplete"]
        [model] = saved[0]["data"]["models"]
        assert model["content"] == ANSWER
        assert rest(server, auth, "user_big", f"/sessions/{sid}")["status"] == "cancelled"

        # What a client sends is still limited: 1009, and the other socket is unharmed.
        await starter.send("startComparison", {"prompt": "y" * 300_000, "providers": ["demo"]})
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await starter.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await live.send("cancelComparison", {"sessionId": "nope"})
        assert (await live.receive())["event"] == "error"
    finally:
        server.stop()
