"""Subscribers: whatever receives a run's frames (a socket of any transport, a remote watcher).

This is the seam between the live core and the transports: a transport hands the core a
:class:`Subscriber` (a name and ``send``); the core never knows which wire it writes to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from comparisons.events import Frame
from comparisons.live.messages import WatchEvent, watch_group

logger = logging.getLogger(__name__)


class Subscriber:
    """Receives frames in order. ``name`` is unique among a run's subscribers.

    ``send`` may raise when the peer is gone: the run then drops this subscriber and goes on.
    ``send_many`` gets frames that queued up together (one message for a remote hop).
    """

    name: str

    async def send(self, frame: Frame) -> None:
        raise NotImplementedError

    async def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            await self.send(frame)

    def close(self) -> None:
        """The run is done with this subscriber (it unsubscribed, or the run ended)."""


class QueuedWatcher(Subscriber):
    """A watcher fed through its own queue, so the run never waits on it and order is kept.

    The snapshot is queued first, then every later event, and one task sends them in order:
    snapshot + events contain every chunk exactly once. Frames that queued up while the previous
    send was in flight go out together (one channel-layer message for a remote watcher), so a
    slow hop coalesces instead of falling behind.
    """

    def __init__(self, target: Subscriber) -> None:
        self.name = target.name
        self.target = target
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain())

    async def send(self, frame: Frame) -> None:
        self.queue.put_nowait(frame)

    def push(self, frame: Frame) -> None:
        self.queue.put_nowait(frame)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def _drain(self) -> None:
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            frames = [frame for frame in batch if frame is not None]
            if frames:
                try:
                    await self.target.send_many(frames)
                except Exception as exc:
                    logger.warning("Watcher %s dropped: %r", self.name, exc)
                    return
            if len(frames) != len(batch):
                return


class RemoteWatcher(Subscriber):
    """A socket in another process watching ``session``: frames go to its reply channel."""

    def __init__(self, layer: Any, *, session: str, reply: str) -> None:
        self.name = remote_name(reply)
        self._layer = layer
        self._session = session
        self._reply = reply

    async def send(self, frame: Frame) -> None:
        await self.send_many([frame])

    async def send_many(self, frames: Sequence[Frame]) -> None:
        message = WatchEvent(session=self._session, frames=list(frames)).message()
        await self._layer.send(self._reply, message)


def remote_name(reply: str) -> str:
    return f"remote:{reply}"


class GroupBroadcast(Subscriber):
    """Every socket watching ``session`` in any process (its watch group): a follow-up turn's
    frames, as one stream opened by its first message (wrap in :class:`QueuedWatcher`, so
    frames that queue up go out together)."""

    def __init__(self, layer: Any, *, session: str, stream: str, origin: str) -> None:
        self.name = f"group:{stream}"
        self._layer = layer
        self._session = session
        self._stream = stream
        self._origin = origin
        self._opened = False

    async def send(self, frame: Frame) -> None:
        await self.send_many([frame])

    async def send_many(self, frames: Sequence[Frame]) -> None:
        message = WatchEvent(
            session=self._session,
            frames=list(frames),
            replay=self._stream,
            opens=not self._opened,
            origin=self._origin,
        ).message()
        self._opened = True
        try:
            await self._layer.group_send(watch_group(self._session), message)
        except Exception as exc:  # a layer outage must not break the run
            logger.warning("Turn frames not broadcast (%s)", type(exc).__name__)
