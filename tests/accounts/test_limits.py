"""Open-socket caps: unauthenticated per client address and in total, signed-in per user."""

from __future__ import annotations

import json
from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from accounts.limits import ConnectionLimiter, ConnectionLimits
from accounts.middleware import ClerkAuthMiddleware
from tests.accounts.clients import EchoConsumer
from tests.tokens import mint_token, shared_private_key

OVER_LIMIT = ("too-many-connections", 4429)


def token(sub: str) -> str:
    return mint_token(shared_private_key(), sub=sub)


class Client:
    def __init__(self, app: Any, *, address: str = "10.0.0.1", sub: str | None = None) -> None:
        headers = [(b"authorization", f"Bearer {token(sub)}".encode())] if sub else []
        self.communicator = WebsocketCommunicator(app, "/ws", headers=headers)
        self.communicator.scope["client"] = (address, 40000)

    async def open(self) -> Client:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected
        return self

    async def receive(self) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=5))

    async def authenticate(self, sub: str) -> dict[str, Any]:
        frame = {"event": "authenticate", "data": {"token": token(sub)}}
        await self.communicator.send_to(text_data=json.dumps(frame))
        return await self.receive()

    async def refusal(self) -> tuple[str, int]:
        event = await self.receive()
        assert event["event"] == "error" and event["data"]["message"], event
        closed = await self.communicator.receive_output(timeout=5)
        assert closed["type"] == "websocket.close", closed
        return event["data"]["reason"], closed["code"]

    async def close(self) -> None:
        await self.communicator.disconnect()


def app_with(**limits: int) -> tuple[Any, ConnectionLimiter]:
    values = {"unauthenticated_per_client": 100, "unauthenticated_total": 100, "per_user": 100}
    limiter = ConnectionLimiter(ConnectionLimits(**(values | limits)))
    consumer = EchoConsumer.as_asgi(connection_limiter=limiter)
    return ClerkAuthMiddleware(URLRouter([path("ws", consumer)])), limiter


def authenticated(sub: str) -> dict[str, Any]:
    return {"event": "authenticated", "data": {"userId": sub}}


async def test_unauthenticated_sockets_are_capped_per_address(static_key) -> None:
    static_key()
    app, limiter = app_with(unauthenticated_per_client=2)
    first, _second = [await Client(app).open() for _ in range(2)]
    assert await (await Client(app).open()).refusal() == OVER_LIMIT
    # Another address is not affected.
    other = await Client(app, address="10.0.0.2").open()
    assert await other.authenticate("user_other") == authenticated("user_other")
    # Authenticating frees the place for the next token-less socket from that address.
    assert await first.authenticate("user_first") == authenticated("user_first")
    late = await Client(app).open()
    assert await late.authenticate("user_late") == authenticated("user_late")
    assert limiter.unauthenticated_count("10.0.0.1") == 1


async def test_unauthenticated_sockets_are_capped_in_total(static_key) -> None:
    static_key()
    app, _ = app_with(unauthenticated_total=2)
    _held = [await Client(app, address=a).open() for a in ("10.0.0.1", "10.0.0.2")]
    assert await (await Client(app, address="10.0.0.3").open()).refusal() == OVER_LIMIT


async def test_a_timed_out_socket_gives_its_place_back(static_key, settings) -> None:
    static_key()
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.2
    app, limiter = app_with(unauthenticated_per_client=1)
    idle = await Client(app).open()
    assert await idle.refusal() == ("auth-timeout", 4401)
    settings.WS_AUTH_TIMEOUT_SECONDS = 10
    fresh = await Client(app).open()
    assert await fresh.authenticate("user_fresh") == authenticated("user_fresh")
    assert limiter.unauthenticated_count() == 0


async def test_sockets_are_capped_per_user(static_key) -> None:
    static_key()
    app, limiter = app_with(per_user=2)
    sockets = []
    for _ in range(2):
        socket = await Client(app, sub="user_many").open()
        assert await socket.receive() == authenticated("user_many")
        sockets.append(socket)
    assert await (await Client(app, sub="user_many").open()).refusal() == OVER_LIMIT
    # The same cap applies to a first-frame authentication.
    frame = await Client(app).open()
    await frame.communicator.send_to(
        text_data=json.dumps({"event": "authenticate", "data": {"token": token("user_many")}})
    )
    assert await frame.refusal() == OVER_LIMIT
    # Other users are not affected; a token refresh does not count twice.
    other = await Client(app, sub="user_else").open()
    assert await other.receive() == authenticated("user_else")
    assert await sockets[0].authenticate("user_many") == authenticated("user_many")
    assert limiter.user_count("user_many") == 2
    # A closed socket frees its place.
    await sockets[0].close()
    again = await Client(app, sub="user_many").open()
    assert await again.receive() == authenticated("user_many")
    assert (limiter.user_count("user_many"), limiter.unauthenticated_count()) == (2, 0)


async def test_the_application_caps_sockets_per_user(static_key, settings) -> None:
    """playground.asgi passes its process-wide limiter to /ws (limits read from settings)."""
    from playground.asgi import application as process_application

    # Its stack without the process start-up (no sweeper thread in the test process).
    application = process_application.app
    static_key()
    settings.WS_MAX_SOCKETS_PER_USER = 1
    first = await Client(application, sub="user_app").open()
    assert await first.receive() == authenticated("user_app")
    second = await Client(application, sub="user_app").open()
    assert await second.refusal() == OVER_LIMIT
    await first.close()
