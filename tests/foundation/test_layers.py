"""The Redis channel layer as configured (``playground.layers``), against the real Redis."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from comparisons.live.layer import LayerInbox
from playground.layers import REDIS_MAX_CONNECTIONS, redis_channel_layer

pytestmark = pytest.mark.redis


def layer_new(redis_url: str, **overrides: Any) -> BaseChannelLayer:
    """A fresh layer (own connection pool) built from the shipped ``CHANNEL_LAYERS`` entry."""
    config = redis_channel_layer(redis_url, prefix=f"test-layers-{os.getpid()}")
    config["CONFIG"]["hosts"][0].update(overrides)
    layer: BaseChannelLayer = import_string(config["BACKEND"])(**config["CONFIG"])
    return layer


async def test_a_cancelled_receive_always_ends(redis_url: str) -> None:
    """Closing a socket cancels its consumer's ``receive()``; that must end it, at any moment.

    The cancellation lands at each of the first 40 event-loop steps of a receive on a new
    connection, so it also hits the instant a command's write completes. With a client socket
    timeout (redis-py then writes through ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation at that instant) some receives did not end: they sent ``BZPOPMIN`` again every
    5 s, for ever, and the consumer never finished.
    """
    not_ended = []
    for steps in range(40):
        layer = layer_new(redis_url)
        channel = await layer.new_channel()
        receive = asyncio.ensure_future(layer.receive(channel))
        for _ in range(steps):
            await asyncio.sleep(0)
        receive.cancel()
        done, _ = await asyncio.wait([receive], timeout=2)
        if done:
            await layer.close_pools()
        else:
            not_ended.append(steps)
    assert not_ended == [], f"receive() still running after cancel at steps {not_ended}"


async def test_messages_still_flow_and_an_idle_receive_outlasts_the_pop_timeout(
    redis_url: str,
) -> None:
    """With no client timeout, a receive waits past BZPOPMIN's 5 s and still gets its message."""
    layer = layer_new(redis_url)
    channel = await layer.new_channel()
    receive = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(5.5)
    assert not receive.done()
    await layer.send(channel, {"type": "hello", "n": 1})
    assert await asyncio.wait_for(receive, 5) == {"type": "hello", "n": 1}
    await layer.close_pools()


async def test_stopping_an_inbox_loses_no_message_of_the_other_channels(redis_url: str) -> None:
    """Sockets closing on a process (each stopping its inbox) while another socket of the same
    process receives a stream: every message arrives, in order.

    channels_redis pops the messages of all a process's channels with one ``BZPOPMIN``; a receive
    cancelled while it waits drops the message it popped (django/channels_redis#366), so stopping
    inboxes by cancellation lost chunks of the socket that stayed."""
    layer = layer_new(redis_url)
    got: list[int] = []
    done = asyncio.Event()
    total = 300

    async def keep(message: dict[str, Any]) -> None:
        got.append(message["n"])
        if message["n"] == total - 1:
            done.set()

    async def ignore(message: dict[str, Any]) -> None:
        pass

    stays = await LayerInbox.open(layer, handle=keep, what="stays")

    async def stream() -> None:
        for n in range(total):
            await layer.send(stays.channel, {"type": "chunk", "n": n})
            await asyncio.sleep(0.002)

    async def churn() -> None:
        while not done.is_set():
            other = await LayerInbox.open(layer, handle=ignore, what="closes")
            await asyncio.sleep(0.001 * (len(got) % 5))
            await other.stop()
            await asyncio.wait([other.task], timeout=10)

    churning = asyncio.gather(*(churn() for _ in range(4)))
    await stream()
    await asyncio.wait_for(done.wait(), 30)
    await churning
    assert got == list(range(total))
    await stays.stop()
    await asyncio.wait_for(stays.task, 10)
    await layer.close_pools()


async def test_a_stopped_inbox_handles_what_came_before_and_nothing_after(
    redis_url: str,
) -> None:
    layer = layer_new(redis_url)
    got: list[int] = []

    async def keep(message: dict[str, Any]) -> None:
        got.append(message["n"])

    inbox = await LayerInbox.open(layer, handle=keep, what="one")
    for n in range(3):
        await layer.send(inbox.channel, {"type": "chunk", "n": n})
    await inbox.stop()
    await asyncio.wait_for(inbox.task, 10)
    await layer.send(inbox.channel, {"type": "chunk", "n": 3})
    assert got == [0, 1, 2]
    await layer.close_pools()


async def test_more_sends_at_once_than_pooled_connections_all_arrive(redis_url: str) -> None:
    """Every remote watcher of a process sends its frames on its own: more of them at once than
    the pool's connections must wait for one, not fail (a failed send drops its watcher)."""
    layer = layer_new(redis_url)
    channels = [await layer.new_channel() for _ in range(3 * REDIS_MAX_CONNECTIONS)]
    outcomes = await asyncio.gather(
        *(layer.send(channel, {"type": "chunk", "n": n}) for n, channel in enumerate(channels)),
        return_exceptions=True,
    )
    assert [o for o in outcomes if o is not None] == []
    received = [await asyncio.wait_for(layer.receive(channel), 5) for channel in channels]
    assert [m["n"] for m in received] == list(range(len(channels)))
    await layer.close_pools()
