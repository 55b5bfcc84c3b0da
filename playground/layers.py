"""Channel-layer configuration shared by the settings and the test suite."""

from __future__ import annotations

from typing import Any

#: channels-redis blocks in ``BZPOPMIN`` for 5 s; redis-py 8 reads with a 5 s socket timeout by
#: default, so an idle consumer raced the timeout and was closed with 1011. Read longer than that.
REDIS_SOCKET_TIMEOUT_SECONDS = 30


def redis_channel_layer(
    url: str, *, capacity: int = 10_000, expiry: int = 120, prefix: str = "playground"
) -> dict[str, Any]:
    """A channels-redis ``CHANNEL_LAYERS`` entry for ``url``.

    The library's defaults (capacity 100, expiry 60 s) drop messages silently under load.
    """
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS}],
            "capacity": capacity,
            "expiry": expiry,
            "prefix": prefix,
        },
    }
