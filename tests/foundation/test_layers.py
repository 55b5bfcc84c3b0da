"""The Redis channel layer as configured (``playground.layers``), against the real Redis."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from playground.layers import redis_channel_layer

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
