"""Fixtures for end-to-end comparison tests: fake upstream, tokens, socket helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

# The vendor SDKs load with the test modules, as a serving process loads them before it serves
# (playground/startup.py): loaded by a comparison's start, they held the event loop for 13-20 s
# of a busy machine within a test's waits (a start's first events) and time limit.
import providers.backends.anthropic
import providers.backends.google
import providers.backends.openai  # noqa: F401
from tests.fake_upstream.fixtures import (  # noqa: F401
    fake_upstream,
    providers_closed,
    upstream_providers,
)

Event = dict[str, Any]


class Client:
    """A WebSocket client of the real ASGI application, speaking the JSON frame protocol."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.events: list[Event] = []

    async def send(self, event: str, data: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps({"event": event, "data": data}))

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 10) -> Event:
        event = json.loads(await self.communicator.receive_from(timeout=timeout))
        self.events.append(event)
        return event

    async def until(self, predicate: Callable[[Event], bool], timeout: float = 15) -> list[Event]:
        """Receive events until one matches ``predicate``; returns all received, in order."""
        got: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.receive(timeout=timeout)
                got.append(event)
                if predicate(event):
                    return got

    async def until_event(self, name: str, timeout: float = 15) -> list[Event]:
        return await self.until(lambda e: e["event"] == name, timeout)

    async def expect_nothing(self) -> None:
        """Nothing more is pending for this socket: a probe frame's answer (the server handles a
        socket's frames in order, after what it already sent) is the very next frame."""
        await self.send("probe.nothing-pending", None)
        answer = await self.receive()
        assert answer == {
            "event": "error",
            "data": {"message": "Unknown event: probe.nothing-pending"},
        }, answer

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def connect(token_for: Callable[[str], str]) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(user_id)``: an authenticated socket to ``/ws`` (header token)."""
    from playground.asgi import router as application

    clients: list[Client] = []

    async def _connect(user_id: str = "user_alice") -> Client:
        communicator = WebsocketCommunicator(
            application,
            "/ws",
            headers=[(b"authorization", f"Bearer {token_for(user_id)}".encode())],
        )
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        client = Client(communicator)
        first = await client.receive()
        assert first == {"event": "authenticated", "data": {"userId": user_id}}
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()
    # Runs outlive their sockets by design; stop them before the test database goes away.
    from playground.asgi import live

    async with asyncio.timeout(10):
        await live.runs.cancel_all()
