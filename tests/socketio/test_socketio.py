"""Socket.IO at /socket.io/ of a real `manage.py serve` process, driven by python-socketio's own
AsyncClient: the same product as /ws on both transports."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import engineio.packet
import engineio.payload
import pytest
import socketio
import websockets

from tests.comparisons.test_processes import chunks_by_model, demo_env, open_socket, rest
from tests.servers import ProcessAuth, ProcessDatabases, Server
from tests.socketio.clients import SioClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TRANSPORTS = [["websocket"], ["polling"], None]  # None: the client's default (polling, upgrade)


@pytest.fixture(scope="module")
def auth() -> ProcessAuth:
    return ProcessAuth()


@pytest.fixture(scope="module")
def server(
    process_databases: ProcessDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    auth: ProcessAuth,
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("sio")
    with process_databases.copy() as database:
        env = demo_env(
            database,
            tmp,
            auth,
            CORS_ORIGIN="http://app.example",
            WS_MAX_SOCKETS_PER_USER="3",
            CLERK_CLOCK_SKEW_SECONDS="0",
            DEMO_TOKENS_PER_SECOND="200",
        )
        server = Server(env).start(stdout=tmp / "stdout.log")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
async def sio(server: Server, auth: ProcessAuth) -> Any:
    """``await sio(user, transports=None)``: a connected Socket.IO client (handshake auth)."""
    clients: list[SioClient] = []

    async def _open(user: str, transports: list[str] | None = None, **kwargs: Any) -> SioClient:
        client = await SioClient().connect(
            server.url, token=auth.token(user), transports=transports, **kwargs
        )
        clients.append(client)
        first = await client.receive()
        assert first == {"event": "authenticated", "data": {"userId": user}}
        return client

    yield _open
    for client in clients:
        await client.close()


TWO_MODELS = {
    "prompt": "Tell me about relays",
    "models": [{"provider": "demo"}, {"provider": "demo", "model": "demo-fast"}],
}


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling", "default"])
async def test_a_comparison_streams_on_every_transport(server, auth, sio, transports) -> None:
    user = f"user_stream_{transports[0] if transports else 'default'}"
    client = await sio(user, transports)
    ack = await client.call("startComparison", TWO_MODELS)
    sid = ack["sessionId"]
    events = await client.until("comparisonComplete", timeout=60)
    assert events[0]["event"] == "sessionCreated"
    assert events[0]["data"]["sessionId"] == sid
    assert [m["key"] for m in events[0]["data"]["models"]] == ["demo-echo", "demo-fast"]
    assert events[-1] == {
        "event": "comparisonComplete",
        "data": {"sessionId": sid, "status": "complete"},
    }
    chunks = chunks_by_model(events)
    for key, items in chunks.items():
        assert [c["index"] for c in items] == list(range(len(items))), key
    completes = [e["data"] for e in events if e["event"] == "modelComplete"]
    assert {c["model"] for c in completes} == {"demo-echo", "demo-fast"}
    assert all(c["metrics"]["outputTokens"] > 0 for c in completes)
    saved = rest(server, auth, user, f"/sessions/{sid}")
    assert {k: v["content"] for k, v in saved["responses"].items()} == {
        k: "".join(c["chunk"] for c in v) for k, v in chunks.items()
    }


async def test_the_seeds_providers_form_without_an_ack(sio) -> None:
    client = await sio("user_seed_form")
    await client.emit("startComparison", {"prompt": "hello", "providers": ["demo"]})
    events = await client.until("comparisonComplete", timeout=60)
    assert [e["event"] for e in events[:2]] == ["sessionCreated", "modelStatus"]
    assert events[-1]["data"]["status"] == "complete"


@pytest.mark.parametrize(
    ("event", "data", "message"),
    [
        ("startComparison", {"providers": ["demo"]}, "prompt"),
        ("startComparison", {"prompt": "x", "providers": ["nope"]}, "Unknown provider 'nope'"),
        ("startComparison", "not an object", "startComparison"),
        ("cancelComparison", {"sessionId": "0" * 24}, "not found"),
        ("cancelModel", {"sessionId": "0" * 24}, "model"),
        ("watchSession", {}, "sessionId"),
        ("launchMissiles", {}, "Unknown event: launchMissiles"),
    ],
)
async def test_bad_requests_get_a_named_error_and_the_socket_stays(
    sio, event, data, message
) -> None:
    client = await sio(f"user_bad_{uuid.uuid4().hex[:8]}")  # its own per-user limits
    ack = await client.call(event, data)
    error = await client.receive()
    assert error["event"] == "error"
    assert message in error["data"]["message"]
    assert ack == {"error": error["data"]["message"]}
    await client.emit("startComparison", {"prompt": "still here", "providers": ["demo"]})
    assert (await client.receive())["event"] == "sessionCreated"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[" * 5000 + "]" * 5000, "Frame is not valid JSON: nested too deeply"),
        ('{"prompt": "x",', "Frame is not valid JSON"),
    ],
)
async def test_undecodable_json_gets_a_named_error(server, auth, payload, message) -> None:
    """Raw Engine.IO/Socket.IO frames (a library client cannot send broken JSON)."""
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as ws:

        async def recv() -> str:
            text = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(text, str)
            return text

        assert (await recv()).startswith("0")
        await ws.send("40" + json.dumps({"token": auth.token("user_raw")}))
        assert (await recv()).startswith("40")
        assert (await recv()).startswith('42["authenticated"')
        await ws.send('421["startComparison",' + payload + "]")
        error = await recv()
        assert error == "42" + json.dumps(["error", {"message": message}], separators=(",", ":"))
        ack = await recv()
        assert ack == "431" + json.dumps([{"error": message}], separators=(",", ":"))
        await ws.send('42["startComparison",{"prompt":"still here","providers":["demo"]}]')
        assert (await recv()).startswith('42["sessionCreated"')


async def test_a_refused_start_keeps_its_request_id(sio) -> None:
    client = await sio("user_request_id")
    await client.emit("startComparison", {"prompt": "", "providers": ["demo"], "requestId": "r-7"})
    error = await client.receive()
    assert error["event"] == "error" and error["data"]["requestId"] == "r-7"


async def test_cancel_and_watch_across_transports(server, auth, sio) -> None:
    """A comparison started on Socket.IO is watched and cancelled from /ws, and the other way."""
    user = "user_cross"
    started = await sio(user)
    long = {"prompt": "A long answer please " * 100, "providers": ["demo"]}
    sid = (await started.call("startComparison", long))["sessionId"]
    await started.until("modelChunk")

    ws = await open_socket(server, auth, user)
    await ws.send("watchSession", {"sessionId": sid})
    snapshot = await ws.receive()
    assert snapshot["event"] == "sessionSnapshot" and snapshot["data"]["status"] == "streaming"
    await ws.send("cancelComparison", {"sessionId": sid})
    watched = await ws.until("comparisonComplete")
    assert watched[-1]["data"] == {"sessionId": sid, "status": "cancelled"}
    ended = await started.until("comparisonComplete", session=sid)
    assert ended[-1]["data"]["status"] == "cancelled"

    await ws.send("startComparison", long)
    other = (await ws.receive())["data"]["sessionId"]
    watcher = await sio(user, ["polling"])
    await watcher.emit("watchSession", {"sessionId": other})
    assert (await watcher.receive())["event"] == "sessionSnapshot"
    await watcher.emit("cancelModel", {"sessionId": other, "model": "demo-echo"})
    events = await watcher.until("comparisonComplete")
    assert {"sessionId": other, "model": "demo-echo", "status": "cancelled"} in [
        e["data"] for e in events if e["event"] == "modelStatus"
    ]
    await ws.ws.close()


async def test_another_users_session_is_not_found(sio) -> None:
    owner = await sio("user_owner")
    sid = (await owner.call("startComparison", {"prompt": "mine", "providers": ["demo"]}))[
        "sessionId"
    ]
    stranger = await sio("user_stranger")
    for event in ("watchSession", "cancelComparison"):
        await stranger.emit(event, {"sessionId": sid})
        error = await stranger.receive()
        assert error == {"event": "error", "data": {"message": f"Session {sid} not found"}}


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "token-missing"), ("not-a-jwt", "token-malformed"), ("expired", "token-expired")],
)
async def test_a_missing_or_bad_token_refuses_the_connection(server, auth, token, code) -> None:
    """(Every transport of the seed's own client: test_seed_client.py.)"""
    if token == "expired":
        token = auth.token("user_late", ttl=-60)
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, token=token, transports=["websocket"])
    assert client.connect_error["data"] == {"code": code}
    assert client.connect_error["message"]


async def test_header_and_cookie_tokens_are_accepted(server, auth) -> None:
    for headers in (
        {"Authorization": f"Bearer {auth.token('user_header')}"},
        {"Cookie": f"__session={auth.token('user_header')}"},
    ):
        client = await SioClient().connect(server.url, headers=headers, transports=["websocket"])
        assert (await client.receive())["data"] == {"userId": "user_header"}
        await client.close()


async def test_sockets_count_against_the_same_per_user_cap_as_ws(server, auth, sio) -> None:
    """WS_MAX_SOCKETS_PER_USER=3 here: two /ws sockets and one Socket.IO fill it."""
    user = "user_capped"
    sockets = [await open_socket(server, auth, user) for _ in range(2)]
    await sio(user)
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, token=auth.token(user), transports=["websocket"])
    assert client.connect_error["data"] == {"code": "too-many-connections"}
    for socket in sockets:
        await socket.ws.close()


async def test_the_socket_lives_no_longer_than_its_token_unless_refreshed(server, auth) -> None:
    """CLERK_CLOCK_SKEW_SECONDS=0 here: at the token's exp the socket gets ``error``
    token-expired and is disconnected; one refreshed with ``authenticate`` stays."""
    lapsing = await SioClient().connect(server.url, token=auth.token("user_exp", ttl=4))
    refreshed = await SioClient().connect(server.url, token=auth.token("user_exp", ttl=4))
    assert (await refreshed.receive())["event"] == "authenticated"
    await refreshed.emit("authenticate", {"token": auth.token("user_exp", ttl=600)})
    assert (await refreshed.receive())["event"] == "authenticated"

    assert (await lapsing.receive())["event"] == "authenticated"
    expired = await lapsing.receive(timeout=15)
    assert expired["event"] == "error" and expired["data"]["reason"] == "token-expired"
    await asyncio.wait_for(lapsing.disconnected.wait(), 10)

    await refreshed.emit("startComparison", {"prompt": "still signed in", "providers": ["demo"]})
    assert (await refreshed.receive())["event"] == "sessionCreated"
    await refreshed.emit("authenticate", {"token": auth.token("user_other")})
    mismatch = await refreshed.receive()
    while mismatch["event"] != "error":
        mismatch = await refreshed.receive()
    assert mismatch["data"]["reason"] == "token-user-mismatch"
    await asyncio.wait_for(refreshed.disconnected.wait(), 10)


def _handshake(server: Server, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        f"{server.url}/socket.io/?EIO=4&transport=polling&t={time.time()}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_browser_origins_and_hosts_are_checked(server) -> None:
    status, headers = _handshake(server, {"Origin": "http://app.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert _handshake(server, {"Origin": "http://evil.example"})[0] == 400
    assert _handshake(server, {})[0] == 200  # not a browser: no Origin header
    assert _handshake(server, {"Host": "evil.example"})[0] == 400


async def test_a_websocket_from_a_foreign_origin_is_refused(server, auth) -> None:
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, origin=websockets.Origin("http://evil.example")):
            pass


async def test_the_real_client_address_is_logged(process_databases, tmp_path, auth) -> None:
    """engineio's environ says 127.0.0.1; the log names the address daphne saw (here the
    proxy header it is configured to trust)."""
    with process_databases.copy() as database:
        env = demo_env(database, tmp_path, auth, LOG_LEVEL="INFO", TRUST_X_FORWARDED_PROTO="1")
        server = Server(env).start()
        try:
            token = auth.token("user_logged")
            client = await SioClient().connect(
                server.url,
                token=token,
                transports=["websocket"],
                headers={"X-Forwarded-For": "203.0.113.9"},
            )
            await client.receive()
            await client.close()
        finally:
            server.stop()
    log = server.process.stderr.read().decode()  # type: ignore[union-attr]
    assert "Socket.IO connection from 203.0.113.9 for user_logged" in log
    assert token not in log


async def test_a_blind_battle_votes_and_reveals_over_socketio(server, auth, sio) -> None:
    user = "user_sio_blind"
    client = await sio(user)
    ack = await client.call("startComparison", {**TWO_MODELS, "blind": True})
    sid = ack["sessionId"]
    events = await client.until("comparisonComplete", timeout=60)
    created = events[0]["data"]
    assert created["blind"] is True
    assert created["models"] == [
        {"key": "A", "provider": None, "modelName": None},
        {"key": "B", "provider": None, "modelName": None},
    ]
    assert not [e for e in events if "demo-" in str(e["data"])]
    assert await client.call("vote", {"sessionId": sid, "winner": "tie"}) is None
    assert await client.receive() == {
        "event": "voteRecorded",
        "data": {"sessionId": sid, "turn": 0, "winner": "tie"},
    }
    await client.emit("reveal", {"sessionId": sid})
    revealed = await client.receive()
    assert revealed["event"] == "revealed"
    assert {m["modelName"] for m in revealed["data"]["models"]} == {"demo-echo", "demo-fast"}
    ack = await client.call("vote", {"sessionId": sid, "winner": "A"})
    error = await client.receive()
    assert error["event"] == "error" and "can no longer be changed" in error["data"]["message"]
    assert ack == {"error": error["data"]["message"]}


async def test_flags_and_tags_over_socketio(server, auth, sio) -> None:
    """``flag``/``unflag``/``setTags`` with the real client: answers, acks, strict validation,
    and another user's comparison is not found."""
    user = "user_sio_flags"
    client = await sio(user)
    ack = await client.call("startComparison", {**TWO_MODELS, "blind": True}, timeout=60)
    sid = ack["sessionId"]
    await client.until("comparisonComplete", timeout=60)
    assert await client.call("flag", {"sessionId": sid, "key": "A"}) is None
    assert await client.receive() == {
        "event": "flagged",
        "data": {"sessionId": sid, "turn": 0, "key": "A"},
    }
    await client.emit("unflag", {"sessionId": sid, "key": "A"})
    assert (await client.receive())["event"] == "unflagged"
    await client.emit("setTags", {"sessionId": sid, "tags": ["Poetry", " poetry "]})
    assert await client.receive() == {
        "event": "tagsSet",
        "data": {"sessionId": sid, "tags": ["poetry"]},
    }
    # stop: true on a finished comparison: nothing to stop, the vote stands.
    assert await client.call("vote", {"sessionId": sid, "winner": "A", "stop": True}) is None
    assert (await client.receive())["event"] == "voteRecorded"
    ack = await client.call("flag", {"sessionId": sid, "key": "A", "turn": "0"})
    error = await client.receive()
    assert error["event"] == "error" and "Invalid flag: turn" in error["data"]["message"]
    assert ack == {"error": error["data"]["message"]}
    other = await sio("user_sio_flags_other")
    ack = await other.call("setTags", {"sessionId": sid, "tags": ["x"]})
    assert ack == {"error": f"Session {sid} not found"}
    assert (await other.receive())["data"] == {"message": f"Session {sid} not found"}
    body = rest(server, auth, user, f"/sessions/{sid}/arena")
    assert body["tags"] == ["poetry"] and body["flags"] == []


async def test_a_start_over_the_stream_bound_is_refused_as_server_busy(
    process_databases, tmp_path, auth
) -> None:
    """The per-process bound on open model streams answers Socket.IO as it answers /ws."""
    with process_databases.copy() as database:
        env = demo_env(
            database,
            tmp_path,
            auth,
            PLAYGROUND_MAX_STREAMS_PER_PROCESS="1",
            DEMO_TOKENS_PER_SECOND="5",
        )
        server = Server(env).start()
        clients: list[SioClient] = []
        try:
            for user in ("user_busy_a", "user_busy_b"):
                client = await SioClient().connect(server.url, token=auth.token(user))
                clients.append(client)
                assert (await client.receive())["event"] == "authenticated"
            first, second = clients
            created = await first.call("startComparison", {"prompt": "hi", "providers": ["demo"]})
            ack = await second.call(
                "startComparison", {"prompt": "hi", "providers": ["demo"], "requestId": "r-1"}
            )
            assert ack["error"].startswith("Server busy")
            error = await second.until("error")
            assert error[-1]["data"]["reason"] == "server-busy"
            assert error[-1]["data"]["requestId"] == "r-1"
            assert error[-1]["data"]["retryAfter"] == 5
            await first.emit("cancelComparison", {"sessionId": created["sessionId"]})
            done = await first.until("comparisonComplete", timeout=30)
            assert done[-1]["data"]["sessionId"] == created["sessionId"]
        finally:
            for client in clients:
                await client.close()
            server.stop()


def _poll(url: str, body: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "text/plain;charset=UTF-8")
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


async def test_a_polling_client_that_stops_polling_is_dropped(
    process_databases, tmp_path, auth
) -> None:
    """Engine.IO queues packets for a polling client until it polls, without a bound: past
    WS_MAX_OUTBOUND_BUFFER_BYTES of queued events the socket gets error too-slow and is
    disconnected, instead of queueing every snapshot it asked for."""
    import json

    with process_databases.copy() as database:
        env = demo_env(database, tmp_path, auth, WS_MAX_OUTBOUND_BUFFER_BYTES="1024")
        server = Server(env).start()
        try:
            owner = await open_socket(server, auth, "user_poll")
            await owner.send("startComparison", {"prompt": "hello", "providers": ["demo"]})
            sid = (await owner.until("sessionCreated"))[-1]["data"]["sessionId"]
            await owner.until("comparisonComplete", session=sid)
            await owner.ws.close()

            base = f"{server.url}/socket.io/?EIO=4&transport=polling"
            status, opened = await asyncio.to_thread(_poll, base)
            assert status == 200 and opened.startswith("0")
            url = f"{base}&sid={json.loads(opened[1:])['sid']}"
            token = auth.token("user_poll")
            assert (await asyncio.to_thread(_poll, url, "40" + json.dumps({"token": token})))[0]
            packets: list[str] = []
            while not any('"authenticated"' in p for p in packets):
                status, text = await asyncio.to_thread(_poll, url)
                packets += text.split("\x1e")
            watch = "42" + json.dumps(["watchSession", {"sessionId": sid}])
            # Each answer is a whole snapshot; the client does not poll meanwhile.
            for _ in range(19):
                assert (await asyncio.to_thread(_poll, url, watch))[0] == 200
            got: list[str] = []
            async with asyncio.timeout(30):
                while True:
                    status, text = await asyncio.to_thread(_poll, url)
                    if status != 200:
                        break
                    got += text.split("\x1e")
                    if any(p.startswith("41") for p in got):
                        break
                    if sum('"sessionSnapshot"' in p for p in got) == 19:
                        break
            assert any('"reason":"too-slow"' in p for p in got), got[-3:]
            assert sum('"sessionSnapshot"' in p for p in got) < 19
        finally:
            server.stop()


async def test_a_polling_client_that_fell_behind_gets_payloads_it_can_decode(server, auth) -> None:
    """A long-polling client that polls after many events queued up gets them over several
    answers of at most 16 packets each: python-engineio's client refuses a bigger payload and
    drops the connection (a watcher on a slow machine lost a turn's end marker that way). Every
    chunk arrives once, in order, and the end marker comes last."""
    import json

    user = "user_poll_behind"
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    status, opened = await asyncio.to_thread(_poll, base)
    assert status == 200 and opened.startswith("0")
    url = f"{base}&sid={json.loads(opened[1:])['sid']}"
    assert (await asyncio.to_thread(_poll, url, "40" + json.dumps({"token": auth.token(user)})))[0]
    packets: list[str] = []
    while not any('"authenticated"' in p for p in packets):
        status, text = await asyncio.to_thread(_poll, url)
        assert status == 200
        packets += text.split("\x1e")
    start = "42" + json.dumps(["startComparison", TWO_MODELS])
    assert (await asyncio.to_thread(_poll, url, start))[0] == 200
    # No poll until the comparison is over: all its events wait in the server's queue.
    for _ in range(600):  # up to 2 min on a slow machine
        saved = await asyncio.to_thread(rest, server, auth, user, "/sessions")
        if [s for s in saved if s["status"] == "complete"]:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("the comparison did not complete")
    events: list[dict[str, Any]] = []
    sizes: list[int] = []
    async with asyncio.timeout(60):
        while not events or events[-1]["event"] != "comparisonComplete":
            status, text = await asyncio.to_thread(_poll, url)
            assert status == 200
            # What python-socketio's own client does with the answer (raises on > 16 packets).
            decoded = engineio.payload.Payload(encoded_payload=text).packets
            sizes.append(len(decoded))
            for packet in decoded:
                if packet.packet_type == engineio.packet.MESSAGE and packet.data.startswith("2"):
                    name, data = json.loads(packet.data[1:])
                    events.append({"event": name, "data": data})
    assert max(sizes) == 16 and len(sizes) > 1, sizes
    assert events[0]["event"] == "sessionCreated"
    for key, items in chunks_by_model(events).items():
        assert [c["index"] for c in items] == list(range(len(items))), key
    assert [e["event"] for e in events].count("comparisonComplete") == 1


def answers(events: list[dict[str, Any]]) -> dict[str, str]:
    """Each model's text from its chunks, in index order."""
    texts: dict[str, str] = {}
    for event in events:
        if event["event"] == "modelChunk":
            model = event["data"]["model"]
            texts[model] = texts.get(model, "") + event["data"]["chunk"]
    return texts


async def test_follow_up_turns_over_socketio(server, auth, sio) -> None:
    """A follow-up and a continue-from over Socket.IO, acknowledged with the turn; a second
    client (long-polling) watching the comparison sees each turn live; another user's socket
    gets "not found"."""
    user = "user_sio_turns"
    client = await sio(user, transports=["websocket"])
    ack = await client.call("startComparison", TWO_MODELS, timeout=60)
    sid = ack["sessionId"]
    await client.until("comparisonComplete", timeout=60)
    watcher = await sio(user, transports=["polling"])
    await watcher.emit("watchSession", {"sessionId": sid})
    await watcher.until("comparisonComplete", timeout=60)

    ack = await client.call(
        "sendFollowUp", {"sessionId": sid, "prompt": "And relays in 1900?"}, timeout=60
    )
    assert ack == {"sessionId": sid, "turn": 1}
    events = await client.until("comparisonComplete", timeout=60)
    assert events[0]["event"] == "turnStarted"
    assert events[0]["data"]["prompt"] == "And relays in 1900?"
    assert [m["key"] for m in events[0]["data"]["models"]] == ["demo-echo", "demo-fast"]
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}
    texts = answers(events)
    # The demo says what it was asked and that the conversation went on.
    assert set(texts) == {"demo-echo", "demo-fast"}
    for text in texts.values():
        assert "And relays in 1900?" in text and "follows 1 earlier exchange" in text
    seen = await watcher.until("comparisonComplete", timeout=60)
    assert [e["event"] for e in seen] == [e["event"] for e in events]
    assert all(e["data"].get("turn") == 1 for e in seen)

    ack = await client.call(
        "continueFrom", {"sessionId": sid, "model": "demo-fast", "prompt": "Summarise."}, timeout=60
    )
    assert ack == {"sessionId": sid, "turn": 2}
    events = await client.until("comparisonComplete", timeout=60)
    assert events[0]["data"]["mode"] == "continueFrom" and events[0]["data"]["from"] == "demo-fast"
    # Both models got demo-fast's thread: two earlier exchanges.
    assert all("follows 2 earlier exchange" in text for text in answers(events).values())
    await watcher.until("comparisonComplete", timeout=60)

    body = rest(server, auth, user, f"/sessions/{sid}")
    assert [t["turn"] for t in body["turns"]] == [0, 1, 2]

    other = await sio("user_sio_turns_other")
    ack = await other.call("sendFollowUp", {"sessionId": sid, "prompt": "mine?"})
    assert ack == {"error": f"Session {sid} not found"}
    ack = await other.call("continueFrom", {"sessionId": sid, "model": "A", "prompt": "x"})
    assert ack == {"error": f"Session {sid} not found"}
    ack = await client.call("sendFollowUp", {"sessionId": sid, "prompt": ""})
    assert ack == {"error": "Invalid sendFollowUp: prompt: prompt must not be empty"}
