"""The Redis channel layer class (its own module: settings import :mod:`playground.layers`
without loading channels-redis and redis-py in every Django process)."""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool


class WaitingRedisChannelLayer(RedisChannelLayer):
    """channels-redis whose connection pool waits for a free connection instead of raising.

    redis-py's pool raises ``MaxConnectionsError`` past ``max_connections`` connections in use,
    and a send that raises drops a remote watcher: 200 watchers on another process, each sent its
    frames at once, lost theirs (bench daphne-redis-watch-200). Waiting is backpressure instead.
    """

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        return BlockingConnectionPool.from_url(address, timeout=None, **host)
