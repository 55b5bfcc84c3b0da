"""The application owns its process start-up, whatever launches it.

``daphne playground.asgi:application`` (no ``manage.py serve``) must recover a killed server's
comparisons and close oversized frames with 1009; importing ``playground.asgi`` must leave the
importing process alone, and the start-up must run on ASGI lifespan where a server sends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.comparisons.test_processes import demo_env, open_socket, rest
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ROOT, ProcessAuth, Server, free_port, server_env

# Real processes on a slow, busy machine (load 15 on two cores): the first test of a pytest
# process pays the template database's migrate in its setup (161-218 s), a start with its SDK
# preload tens of seconds more; the refused-starts test's call alone took 134-243 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class FreshServer(Server):
    """``manage.py serve`` in a fresh interpreter, never forked (tests/serverfork.py): for the
    process's own exit, which only a fresh interpreter finalizes."""

    fork = False


class PlainDaphne(Server):
    """``daphne playground.asgi:application``, as deployments launch it (``python -m daphne``,
    forked like ``manage.py serve``)."""

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


async def assert_closed_with_1009(server: Server, auth: ProcessAuth, size: int) -> None:
    ws = await open_socket(server, auth, "user_big")
    await ws.send("startComparison", {"prompt": "y" * size, "providers": ["demo"]})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.receive()
    assert closed.value.rcvd is not None, "dropped without a close frame"
    assert closed.value.rcvd.code == 1009


async def test_plain_daphne_recovers_a_killed_servers_comparison_and_answers_oversized_input(
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
        ws = await open_socket(server, auth, "user_crash")
        await ws.send("startComparison", {"prompt": "A long answer " * 3, "providers": ["demo"]})
        sid = (await ws.receive())["data"]["sessionId"]
        received = ""
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            event = await ws.receive()
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
        assert_oversized_heads_get_json_errors(restarted)
    finally:
        restarted.stop()


LIFESPAN = """
import asyncio, gc, json, sys, threading
import sniffio

def state():
    return {
        "frozen": gc.get_freeze_count(),
        "sdks": sorted(m for m in ("anthropic", "google.genai", "openai") if m in sys.modules),
        "sniffio": sniffio.thread_local.name or sniffio.current_async_library_cvar.get(),
        "sweeper": any(t.name == "comparison-sweeper" for t in threading.enumerate()),
        "switch": sys.getswitchinterval(),
    }

from playground.asgi import application
imported = state()

async def lifespan():
    shutdown = asyncio.Event()
    received = []
    async def receive():
        if not received:
            received.append("startup")
            return {"type": "lifespan.startup"}
        await shutdown.wait()
        return {"type": "lifespan.shutdown"}
    sent = []
    started = asyncio.Event()
    async def send(message):
        sent.append(message["type"])
        started.set()
    task = asyncio.create_task(
        application({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    )
    await started.wait()
    for thread in threading.enumerate():
        if thread.name == "provider-preload":
            await asyncio.to_thread(thread.join, 240)
    running = state(), len(gc.get_objects())
    shutdown.set()
    await task
    return sent, *running, state()

sent, started, unfrozen, stopped = asyncio.run(lifespan())
print(json.dumps({
    "imported": imported, "sent": sent, "started": started, "unfrozen": unfrozen,
    "stopped": stopped,
}))
"""


def run_lifespan(tmp_path: Path, **extra: str) -> dict[str, Any]:
    """Run ``LIFESPAN`` in a fresh interpreter (environment plus ``extra``); its report."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "CRITICAL", **extra}
    env.pop("DATABASE_URL", None)
    env.setdefault("PROVIDER_PRELOAD", "1")  # the default, whatever the suite's environment says
    done = subprocess.run(
        [sys.executable, "-c", LIFESPAN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        # A fresh interpreter importing Django and the SDKs: over 60 s on a slow, busy machine.
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_application_changes_nothing_and_lifespan_starts_the_process(
    tmp_path: Path,
) -> None:
    """Tests and tools import ``playground.asgi``: their heap is not frozen, no SDK is loaded.
    A server that sends ``lifespan.startup`` gets the whole start-up before its first request;
    ``lifespan.shutdown`` stops the sweeper (the process may go on without the application)."""
    result = run_lifespan(tmp_path)
    assert result["imported"] == {
        "frozen": 0,
        "sdks": [],
        "sniffio": None,
        "sweeper": False,
        "switch": 0.005,
    }
    assert result["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    started = result["started"]
    assert started["sdks"] == ["anthropic", "google.genai", "openai"]
    assert started["sniffio"] == "asyncio" and started["sweeper"]
    assert started["switch"] == 0.001  # the loop waits behind other threads 1 ms at most
    assert started["frozen"] > 100_000 and result["unfrozen"] < 10_000
    assert result["stopped"]["sweeper"] is False


def test_without_the_preload_the_start_up_loads_no_sdk_and_still_freezes_the_heap(
    tmp_path: Path,
) -> None:
    """``PROVIDER_PRELOAD=0``: the start-up runs (sweeper, sniffio, frozen heap) but leaves each
    SDK to its provider's first use."""
    result = run_lifespan(tmp_path, PROVIDER_PRELOAD="0")
    assert result["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    started = result["started"]
    assert started["sdks"] == []
    assert started["sniffio"] == "asyncio" and started["sweeper"]
    assert started["frozen"] > 10_000 and result["unfrozen"] < 10_000


def raw_request(server: Server, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as is on a new connection; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer, "connection dropped without a response"
    top, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_oversized_heads_get_json_errors(server: Server) -> None:
    """A head daphne refuses answers the API's JSON error, not a drop or a bare 400."""
    token = "Authorization: Bearer " + "t" * 20_000
    many = "".join(f"X-Big-{n}: {'v' * 6000}\r\n" for n in range(3))
    cases = [
        (f"GET /me HTTP/1.1\r\nHost: x\r\n{token}\r\n\r\n", 431),  # one line over 16 KiB
        (f"GET /me HTTP/1.1\r\nHost: x\r\n{many}\r\n", 431),  # 18 KiB in lines under 16 KiB
        (f"GET /{'p' * 20_000} HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ]
    for head, expected in cases:
        status, headers, body = raw_request(server, head.encode())
        assert status == expected
        assert headers["content-type"] == "application/json"
        error = json.loads(body)
        assert error["statusCode"] == expected and error["message"]
    status, _, _ = raw_request(
        server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert status == 200


@pytest.mark.parametrize(("trusted", "status"), [("0", 301), ("1", 401)])
def test_serve_trusts_forwarded_headers_only_when_told_to(
    trusted: str, status: int, database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    """A client's own X-Forwarded-Proto must not pass for https (and skip the https redirect)."""
    env = demo_env(
        database,
        tmp_path,
        auth,
        DJANGO_SECURE_SSL_REDIRECT="1",
        TRUST_X_FORWARDED_PROTO=trusted,
    )
    server = Server(env).start()
    try:
        head = (
            "GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
            "X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
        )
        got, headers, _ = raw_request(server, head.encode())
        assert got == status
        if status == 301:
            assert headers["location"].startswith("https://")
    finally:
        server.stop()


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def ready(server: Server) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(server.url + "/health/ready", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.postgres
async def test_serve_starts_with_the_database_down_and_recovers_when_it_returns(
    database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    """Not ready (503) while PostgreSQL cannot be reached; ready, and serving, once it can."""
    real = urllib.parse.urlsplit(database)
    port = free_port()  # nothing listens here until the "database returns" below
    userinfo = real.netloc.rpartition("@")[0]
    down = real._replace(netloc=f"{userinfo}@127.0.0.1:{port}").geturl()
    env = demo_env(down, tmp_path, auth, PLAYGROUND_HEARTBEAT_STALE_SECONDS="1.5")
    server = Server(env).start()
    try:
        status, body = ready(server)
        assert (status, body["checks"]) == (503, {"database": "fail"})

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(real.hostname, real.port)
            await asyncio.gather(forward(reader, up_writer), forward(up_reader, writer))

        proxy = await asyncio.start_server(relay, "127.0.0.1", port)
        try:
            for _ in range(100):
                status, body = await asyncio.to_thread(ready, server)
                if status == 200:
                    break
                await asyncio.sleep(0.2)
            assert (status, body["checks"]) == (200, {"database": "ok"})
            sessions = await asyncio.to_thread(rest, server, auth, "user_back", "/sessions")
            assert sessions == []
        finally:
            proxy.close()
    finally:
        server.stop()


def test_serve_outside_debug_collects_static_files_for_the_admin(
    database: str, tmp_path: Path, auth: ProcessAuth
) -> None:
    """`DJANGO_DEBUG=0 make run` (no collectstatic step): the admin and its assets answer."""
    env = demo_env(
        database,
        tmp_path,
        auth,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_SECURE_SSL_REDIRECT="0",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    server = Server(env).start(timeout=90)
    try:
        with urllib.request.urlopen(server.url + "/admin/login/", timeout=10) as response:
            assert response.status == 200
            page = response.read().decode()
        [stylesheet] = re.findall(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', page)
        with urllib.request.urlopen(server.url + stylesheet, timeout=10) as response:
            assert response.status == 200 and b"body" in response.read()
    finally:
        server.stop()


class FreshPlainDaphne(PlainDaphne):
    """``python -m daphne ...`` in a fresh interpreter, for its exit."""

    fork = False


@pytest.mark.parametrize("launcher", [FreshServer, FreshPlainDaphne])
async def test_a_stopped_server_closes_its_provider_connections_cleanly(
    launcher: type[Server], database: str, tmp_path: Path, auth: ProcessAuth, fake_upstream: Any
) -> None:
    """After answering through two vendors' HTTP clients, a server told to stop (SIGTERM) closes
    them: its log has no "Unclosed client session" error or traceback."""
    fake_upstream.script("bye", deltas=["see ", "you"])
    env = server_env(
        database,
        tmp_path,
        **auth.env(),
        ANTHROPIC_API_KEY=TEST_API_KEY,
        ANTHROPIC_BASE_URL=fake_upstream.url,
        GOOGLE_GEMINI_API_KEY=TEST_API_KEY,
        GOOGLE_GEMINI_BASE_URL=fake_upstream.url,
    )
    log = tmp_path / "server.log"
    server = launcher(env).start(stderr=log)
    try:
        ws = await open_socket(server, auth, "user_bye")
        await ws.send(
            "startComparison", {"prompt": "scenario:bye", "providers": ["anthropic", "google"]}
        )
        # The first start waits for the SDK preload: 30-78 s wall on a slow, busy machine.
        events = await ws.until("comparisonComplete", timeout=240)
        assert sum(e["event"] == "modelComplete" for e in events) == 2
        await ws.ws.close()
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode is not None
    text = log.read_text()
    assert "Unclosed" not in text and "Traceback" not in text, text[-3000:]
