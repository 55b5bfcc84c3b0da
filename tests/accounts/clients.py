"""Clients of the real ASGI stack: HTTP through ``playground.asgi.application`` and a test ``/ws``.

No consumer is mounted at ``/ws`` by the accounts app, so the socket tests use a trivial subclass of
the base consumer behind ``ClerkAuthMiddleware``, exactly as ``playground.asgi`` wraps its router.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from accounts.consumers import AuthenticatedJsonConsumer
from accounts.middleware import ClerkAuthMiddleware


class EchoConsumer(AuthenticatedJsonConsumer):
    """Answers ``echo`` with the data and the signed-in user."""

    async def on_echo(self, data: Any) -> None:
        await self.send_event("echo", {"data": data, "userId": self.user_id})


socket_app = ClerkAuthMiddleware(URLRouter([path("ws", EchoConsumer.as_asgi())]))


async def http_get(
    path: str = "/me", *, token: str | None = None, cookie: str | None = None, **headers: str
) -> httpx.Response:
    """GET through the real ASGI application (Django + Ninja + ClerkAuth)."""
    from playground.asgi import router as application

    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = f"__session={cookie}"
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path, headers=headers)


class Socket:
    """A ``WebsocketCommunicator`` on the test ``/ws`` speaking JSON event frames."""

    def __init__(self, *, token: str | None = None, cookie: str | None = None) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if cookie is not None:
            headers.append((b"cookie", f"__session={cookie}".encode()))
        self.communicator = WebsocketCommunicator(socket_app, "/ws", headers=headers)

    async def open(self) -> Socket:
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected
        return self

    async def send(self, event: str, data: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps({"event": event, "data": data}))

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def close_code(self, timeout: float = 5) -> int:
        """The code of the close the server sends next."""
        message = await self.communicator.receive_output(timeout=timeout)
        assert message["type"] == "websocket.close", message
        return int(message["code"])

    async def refusal(self, timeout: float = 5) -> tuple[str, int]:
        """(reason, close code) of an authentication refusal: error event, then close."""
        event = await self.receive(timeout)
        assert event["event"] == "error", event
        assert event["data"]["message"]
        return event["data"]["reason"], await self.close_code(timeout)

    async def nothing(self, timeout: float = 0.1) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def socket_outcome(token: str, via: str) -> tuple[str, Any]:
    """Authenticate on ``/ws`` with ``token`` ``via`` header, cookie or frame.

    ``("authenticated", userId)`` or ``("refused", (reason, close code))``.
    """
    if via == "frame":
        socket = await Socket().open()
        await socket.send("authenticate", {"token": token})
    elif via == "cookie":
        socket = await Socket(cookie=token).open()
    else:
        socket = await Socket(token=token).open()
    try:
        event = await socket.receive()
        if event["event"] == "authenticated":
            return "authenticated", event["data"]["userId"]
        assert event["event"] == "error", event
        return "refused", (event["data"]["reason"], await socket.close_code())
    finally:
        await socket.close()
