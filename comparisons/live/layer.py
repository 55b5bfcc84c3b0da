"""Channel-layer receiving that survives a layer outage (Redis down, restarted).

A layer failure must never end a run or close a local socket: a receiver that fails waits with
backoff and tries again, logging once per outage, and before it receives again it re-joins its
groups (a restarted Redis has forgotten them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from comparisons.live.messages import InboxStop

logger = logging.getLogger(__name__)

#: Seconds between attempts while the layer is down (the last one repeats).
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)


class LayerOutage:
    """Backoff and once-per-outage logging for one user of the layer (``what``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    async def failed(self, exc: BaseException) -> None:
        """Log the first failure of an outage, then wait before the next attempt."""
        self.failures += 1
        if self.failures == 1:
            logger.warning(
                "Channel layer unavailable for %s (%s: %s); retrying",
                self.what,
                type(exc).__name__,
                exc,
            )
        await asyncio.sleep(RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS)) - 1])

    def succeeded(self) -> None:
        if self.failures:
            logger.warning("Channel layer back for %s after %d retries", self.what, self.failures)
            self.failures = 0


class RetryingReceive:
    """``await receiver()`` returns the next message of ``receive``, however long the layer is
    down meanwhile; after a failure, ``rejoin`` (the receiver's group memberships) must succeed
    before it receives again."""

    def __init__(
        self,
        receive: Callable[[], Awaitable[dict[str, Any]]],
        *,
        what: str,
        rejoin: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._receive = receive
        self._rejoin = rejoin
        self._outage = LayerOutage(what)
        self._must_rejoin = False

    async def __call__(self) -> dict[str, Any]:
        while True:
            try:
                if self._must_rejoin and self._rejoin is not None:
                    await self._rejoin()
                self._must_rejoin = False
                message = await self._receive()
            except Exception as exc:  # the layer's own errors (redis-py) vary by version
                self._must_rejoin = True
                await self._outage.failed(exc)
                continue
            self._outage.succeeded()
            return message


class LayerInbox:
    """A channel of this process on the layer, and the task that hands its messages to
    ``handle`` (however long the layer is down meanwhile, see :class:`RetryingReceive`).

    :meth:`stop` ends it with a message to itself, never by cancelling its receive: with
    channels_redis a receive runs one ``BZPOPMIN`` for every channel of the process, and a
    cancelled one drops the message it popped, which may be another socket's chunk
    (django/channels_redis#366).
    """

    def __init__(
        self,
        layer: Any,
        channel: str,
        *,
        handle: Callable[[dict[str, Any]], Awaitable[None]],
        what: str,
        rejoin: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.channel = channel
        self._layer = layer
        self._handle = handle
        self._receive = RetryingReceive(lambda: layer.receive(channel), what=what, rejoin=rejoin)
        self.task = asyncio.create_task(self._run(), name=f"inbox {what}")

    @classmethod
    async def open(
        cls,
        layer: Any,
        *,
        handle: Callable[[dict[str, Any]], Awaitable[None]],
        what: str,
        rejoin: Callable[[], Awaitable[None]] | None = None,
    ) -> LayerInbox:
        return cls(layer, await layer.new_channel(), handle=handle, what=what, rejoin=rejoin)

    async def _run(self) -> None:
        while True:
            message = await self._receive()
            if message.get("type") == InboxStop.type:
                return
            await self._handle(message)

    async def stop(self) -> None:
        """End the task once the messages sent before this call are handled."""
        if self.task.done():
            return
        try:
            await self._layer.send(self.channel, InboxStop().message())
        except Exception:  # the layer is down: no receive is popping anything to lose
            self.task.cancel()
