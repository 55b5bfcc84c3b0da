"""A python-socketio ``AsyncClient`` that records every event, for the Socket.IO tests."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

Event = dict[str, Any]


class SioClient:
    """One Socket.IO client; events land in a queue as ``{"event", "data"}``, in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self.client.on("*", self._event)
        self.client.on("connect_error", self._connect_error)
        self.client.on("disconnect", self._disconnect)

    async def _event(self, event: str, *args: Any) -> None:
        self.queue.put_nowait({"event": event, "data": args[0] if args else None})

    async def _connect_error(self, data: Any) -> None:
        self.connect_error = data

    async def _disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()

    async def connect(
        self,
        url: str,
        *,
        token: str | None = None,
        transports: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> SioClient:
        await self.client.connect(
            url,
            auth={"token": token} if token is not None else None,
            transports=transports,
            headers=headers or {},
            wait_timeout=10,
        )
        return self

    async def emit(self, event: str, data: Any) -> None:
        await self.client.emit(event, data)

    async def call(self, event: str, data: Any, timeout: float = 15) -> Any:
        """Emit with an acknowledgement callback; returns what the server acknowledged."""
        return await self.client.call(event, data, timeout=timeout)

    async def receive(self, timeout: float = 15) -> Event:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(
        self, name: str, timeout: float = 30, session: str | None = None
    ) -> list[Event]:
        """Events up to the first ``name`` (of comparison ``session``, when given)."""
        got: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                got.append(await self.queue.get())
                last = got[-1]
                data = last["data"] if isinstance(last["data"], dict) else {}
                if last["event"] == name and session in (None, data.get("sessionId")):
                    return got

    async def close(self) -> None:
        eio = self.client.eio
        if eio.state == "connected" and eio.current_transport == "polling":
            # python-engineio's client would wait for its pending long-poll GET (up to
            # ping_interval + ping_timeout, 45 s); browsers abort it, and so does this.
            await eio.disconnect(abort=True)
            if eio.read_loop_task is not None:
                eio.read_loop_task.cancel()
            return
        await self.client.disconnect()
