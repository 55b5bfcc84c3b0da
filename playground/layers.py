"""Channel-layer configuration shared by the settings and the test suite."""

from __future__ import annotations

import socket
from typing import Any

#: Seconds to wait for a connection to Redis.
REDIS_CONNECT_TIMEOUT_SECONDS = 5
#: TCP keepalive on Redis connections: a peer that vanished is noticed after about 25 s.
REDIS_KEEPALIVE_OPTIONS: dict[int, int] = (
    {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}
    if hasattr(socket, "TCP_KEEPIDLE")
    else {}
)


#: Connections to Redis per process and event loop (redis-py's own default).
REDIS_MAX_CONNECTIONS = 100


def redis_channel_layer(
    url: str, *, capacity: int = 10_000, expiry: int = 120, prefix: str = "playground"
) -> dict[str, Any]:
    """A channels-redis ``CHANNEL_LAYERS`` entry for ``url``.

    The library's defaults (capacity 100, expiry 60 s) drop messages silently under load.

    No socket timeout on reads and writes (``socket_timeout=None``), on purpose:

    - with one, redis-py writes each command through ``asyncio.wait_for``, and on Python 3.11
      ``wait_for`` drops a cancellation that arrives just as the write completes. A consumer whose
      socket closed at that moment never finished: its ``receive()`` sent ``BZPOPMIN`` again every
      5 s for ever, holding a Redis connection (``tests/foundation/test_layers.py``);
    - redis-py 8's default 5 s read timeout raced channels-redis' 5 s ``BZPOPMIN`` and closed idle
      Redis-backed sockets with 1011.

    Reads are bounded by the server instead (``BZPOPMIN`` answers within 5 s); a dead peer is found
    by TCP keepalive, a refused or slow connect by the connect timeout.
    """
    return {
        "BACKEND": "playground.redis_layer.WaitingRedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": url,
                    "socket_timeout": None,
                    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
                    "socket_keepalive": True,
                    "socket_keepalive_options": REDIS_KEEPALIVE_OPTIONS,
                    "max_connections": REDIS_MAX_CONNECTIONS,
                }
            ],
            "capacity": capacity,
            "expiry": expiry,
            "prefix": prefix,
        },
    }
