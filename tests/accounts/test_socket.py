"""The base consumer: first-frame authentication, timeout, re-authentication, dispatch."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from channels.db import database_sync_to_async

from tests.accounts.clients import Socket
from tests.tokens import mint_token, shared_private_key


def key() -> Any:
    return shared_private_key()


async def test_no_token_in_time_is_an_error_and_4401(static_key, settings) -> None:
    static_key()
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.2
    socket = await Socket().open()
    event = await socket.receive(timeout=2)
    assert event == {
        "event": "error",
        "data": {"message": "Authentication timed out", "reason": "auth-timeout"},
    }
    assert await socket.close_code() == 4401


async def test_events_before_authentication_are_refused_and_the_socket_stays_open(
    static_key, settings
) -> None:
    static_key()
    settings.WS_AUTH_TIMEOUT_SECONDS = 5
    socket = await Socket().open()
    await socket.send("echo", {"x": 1})
    assert await socket.receive() == {
        "event": "error",
        "data": {"message": "Not authenticated: send authenticate first"},
    }
    await socket.send("authenticate", {"token": mint_token(key(), sub="user_late")})
    assert await socket.receive() == {"event": "authenticated", "data": {"userId": "user_late"}}
    await socket.send("echo", {"x": 1})
    assert await socket.receive() == {
        "event": "echo",
        "data": {"data": {"x": 1}, "userId": "user_late"},
    }
    await socket.close()


async def test_frames_are_answered_while_the_database_thread_is_busy(static_key) -> None:
    # A slow query (here: the database thread held) must not hold up every socket's frames.
    static_key()
    socket = await Socket(token=mint_token(key(), sub="user_busy")).open()
    assert (await socket.receive())["event"] == "authenticated"
    release = threading.Event()
    held = asyncio.ensure_future(database_sync_to_async(release.wait)(10))
    try:
        await socket.send("echo", {"x": 1})
        assert await socket.receive(timeout=2) == {
            "event": "echo",
            "data": {"data": {"x": 1}, "userId": "user_busy"},
        }
    finally:
        release.set()
        await held
    await socket.close()


async def test_authenticated_socket_is_not_closed_by_the_timer(static_key, settings) -> None:
    static_key()
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.1
    socket = await Socket().open()
    await socket.send("authenticate", {"token": mint_token(key(), sub="user_t")})
    assert (await socket.receive())["event"] == "authenticated"
    assert await socket.nothing(timeout=0.3)
    await socket.close()


async def test_authenticate_without_a_token_is_refused(static_key) -> None:
    static_key()
    socket = await Socket().open()
    await socket.send("authenticate", {})
    assert await socket.refusal() == ("token-missing", 4401)


async def test_reauthenticate_same_user_and_other_user(static_key) -> None:
    static_key()
    socket = await Socket(token=mint_token(key(), sub="user_a")).open()
    assert await socket.receive() == {"event": "authenticated", "data": {"userId": "user_a"}}
    await socket.send("authenticate", {"token": mint_token(key(), sub="user_a")})
    assert await socket.receive() == {"event": "authenticated", "data": {"userId": "user_a"}}
    await socket.send("authenticate", {"token": mint_token(key(), sub="user_b")})
    assert await socket.refusal() == ("token-user-mismatch", 4401)


async def test_bad_refresh_token_closes(static_key) -> None:
    static_key()
    socket = await Socket(token=mint_token(key(), sub="user_a")).open()
    await socket.receive()
    await socket.send("authenticate", {"token": mint_token(key(), exp=0)})
    assert await socket.refusal() == ("token-expired", 4401)


def short_token(sub: str, ttl: int = 2) -> str:
    return mint_token(key(), sub=sub, exp=int(time.time()) + ttl)


async def test_socket_is_closed_when_its_token_lapses(static_key, settings) -> None:
    static_key()
    settings.CLERK_CLOCK_SKEW_SECONDS = 0
    socket = await Socket(token=short_token("user_lapse")).open()
    assert (await socket.receive())["event"] == "authenticated"
    assert await socket.refusal(timeout=10) == ("token-expired", 4401)


async def test_an_event_after_the_token_lapsed_is_refused_not_run(static_key, settings) -> None:
    static_key()
    settings.CLERK_CLOCK_SKEW_SECONDS = 0
    socket = await Socket(token=short_token("user_late_event", ttl=1)).open()
    assert (await socket.receive())["event"] == "authenticated"
    # Hold the event loop past exp (as a busy server would) so the frame and the expiry race.
    lapsed_at = int(time.time()) + 2
    while time.time() < lapsed_at:
        time.sleep(0.05)  # noqa: ASYNC251 -- blocking the loop is the point here
    await socket.send("echo", {"x": 1})
    assert await socket.refusal(timeout=10) == ("token-expired", 4401)


async def test_refresh_before_exp_keeps_the_socket_open(static_key, settings) -> None:
    static_key()
    settings.CLERK_CLOCK_SKEW_SECONDS = 0
    token = short_token("user_refresh")
    refreshed = await Socket(token=token).open()
    stale = await Socket(token=token).open()
    assert (await refreshed.receive())["event"] == "authenticated"
    assert (await stale.receive())["event"] == "authenticated"
    await refreshed.send("authenticate", {"token": mint_token(key(), sub="user_refresh")})
    assert (await refreshed.receive())["event"] == "authenticated"
    # The same first token lapses on the socket that was not refreshed ...
    assert await stale.refusal(timeout=10) == ("token-expired", 4401)
    # ... while the refreshed one still runs events.
    await refreshed.send("echo", {"x": 2})
    assert await refreshed.receive() == {
        "event": "echo",
        "data": {"data": {"x": 2}, "userId": "user_refresh"},
    }
    await refreshed.close()


async def test_frames_after_authentication(static_key) -> None:
    static_key()
    socket = await Socket(token=mint_token(key(), sub="user_f")).open()
    await socket.receive()
    cases = [
        ("not json", "Frame is not valid JSON"),
        ("[1, 2]", 'Frame must be a JSON object with a string "event"'),
        ('{"data": {}}', 'Frame must be a JSON object with a string "event"'),
        ('{"event": 5}', 'Frame must be a JSON object with a string "event"'),
        ('{"event": "launchMissiles", "data": {}}', "Unknown event: launchMissiles"),
        ('{"event": "__class__"}', "Unknown event: __class__"),
        ('{"event": "a-b"}', "Unknown event: a-b"),
    ]
    for frame, message in cases:
        await socket.send_raw(frame)
        assert await socket.receive() == {"event": "error", "data": {"message": message}}
    await socket.communicator.send_to(bytes_data=b"\x00")
    assert (await socket.receive())["event"] == "error"
    await socket.send("echo", [1, "two"])
    assert await socket.receive() == {
        "event": "echo",
        "data": {"data": [1, "two"], "userId": "user_f"},
    }
    await socket.close()


async def test_deeply_nested_json_is_an_error_even_before_authentication(static_key) -> None:
    static_key()
    socket = await Socket().open()
    await socket.send_raw("[" * 50_000 + "]" * 50_000)
    assert await socket.receive() == {
        "event": "error",
        "data": {"message": "Frame is not valid JSON: nested too deeply"},
    }
    # The socket stays open and can still authenticate.
    await socket.send("authenticate", {"token": mint_token(key(), sub="user_deep")})
    assert await socket.receive() == {"event": "authenticated", "data": {"userId": "user_deep"}}
    await socket.close()


async def test_the_application_wraps_ws_with_the_middleware(static_key) -> None:
    """``playground.asgi.application``'s ``/ws`` authenticates through ClerkAuthMiddleware."""
    from channels.testing import WebsocketCommunicator

    from playground.asgi import router as application

    static_key()
    good = [(b"authorization", f"Bearer {mint_token(key(), sub='user_app')}".encode())]
    communicator = WebsocketCommunicator(application, "/ws", headers=good)
    assert (await communicator.connect(timeout=5))[0]
    assert await communicator.receive_json_from() == {
        "event": "authenticated",
        "data": {"userId": "user_app"},
    }
    await communicator.disconnect()

    bad = [(b"cookie", f"__session={mint_token(key(), exp=0)}".encode())]
    communicator = WebsocketCommunicator(application, "/ws", headers=bad)
    assert (await communicator.connect(timeout=5))[0]
    event = await communicator.receive_json_from()
    assert event["event"] == "error" and event["data"]["reason"] == "token-expired"
    assert (await communicator.receive_output())["code"] == 4401
