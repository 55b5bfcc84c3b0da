"""A client that does not read must not grow the server's memory or slow anyone else.

A real ``manage.py serve`` process (daphne): one socket with a tiny receive buffer that stops
reading asks for many snapshots of a large saved comparison (each ``watchSession`` answers the
whole text), while another user streams a comparison normally. The server closes the slow socket
with 4008 once its unsent data passes ``WS_MAX_OUTBOUND_BUFFER_BYTES``, its memory stays within a
bound, and the normal client's comparison completes whole.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
import websockets

from tests.comparisons.test_processes import open_socket
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ProcessAuth, Server, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WATCHES = 200
#: 200 KB of saved text: WATCHES snapshots are about 40 MB unsent without a bound.
PIECE = "x" * 4000
PIECES = 50
LIMIT = 1024 * 1024


@pytest.fixture
def auth() -> ProcessAuth:
    return ProcessAuth()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_socket_that_does_not_read_is_closed_with_4008_and_memory_stays_bounded(
    database, tmp_path, auth, fake_upstream
) -> None:
    upstream = fake_upstream
    upstream.script("big", deltas=[PIECE] * PIECES)
    upstream.script("normal", deltas=[f"w{i} " for i in range(60)], delay=0.02)
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=upstream.url,
        WS_MAX_OUTBOUND_BUFFER_BYTES=str(LIMIT),
        PLAYGROUND_MAX_WATCHES_PER_10_SECONDS=str(WATCHES * 2),
        # Nothing imported in the background during the measurement (the start-up's preload of
        # numpy could land after the baseline below): the SDK loads with the first comparison.
        PROVIDER_PRELOAD="0",
    )
    server = Server(env).start(stderr=tmp_path / "server.log")
    try:
        assert server.process is not None
        owner = await open_socket(server, auth, "user_slow")
        await owner.send("startComparison", {"prompt": "scenario:big", "providers": ["google"]})
        sid = (await owner.until("sessionCreated"))[-1]["data"]["sessionId"]
        await owner.until("comparisonComplete", session=sid)
        before = rss_bytes(server.process.pid)

        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.setblocking(False)
        slow = await websockets.connect(
            server.ws_url,
            sock=raw,
            additional_headers={"Authorization": f"Bearer {auth.token('user_slow')}"},
            compression=None,
            max_queue=1,
        )
        for _ in range(WATCHES):
            await slow.send(json.dumps({"event": "watchSession", "data": {"sessionId": sid}}))

        # Meanwhile another user streams normally, start to end.
        normal = await open_socket(server, auth, "user_normal")
        await normal.send("startComparison", {"prompt": "scenario:normal", "providers": ["google"]})
        events = await normal.until("comparisonComplete")
        chunks = [e["data"]["chunk"] for e in events if e["event"] == "modelChunk"]
        assert "".join(chunks) == "".join(f"w{i} " for i in range(60))

        grown = rss_bytes(server.process.pid) - before
        # Unbounded, the unread snapshots alone would be about 40 MB.
        assert grown < 20 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"

        # The server says when it closes the slow socket; only then does the socket read (any
        # earlier, it could keep pace with a server slowed by a busy machine).
        async with asyncio.timeout(60):
            while "closed with 4008" not in server.log():  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.05)

        # The slow socket, reading at last: some snapshots, then the close with 4008.
        snapshots = 0
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(60):
                while True:
                    frame = json.loads(await slow.recv())
                    snapshots += frame["event"] == "sessionSnapshot"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        assert snapshots < WATCHES
        await owner.ws.close()
        await normal.ws.close()
    finally:
        server.stop()
