"""WebSocket URL routes, collected from the apps that serve sockets."""

from __future__ import annotations

from typing import Any

from django.urls import path

from accounts.limits import ConnectionLimiter
from comparisons.consumers import ComparisonConsumer
from comparisons.live.core import LiveComparisons


def websocket_urlpatterns(
    *, connection_limiter: ConnectionLimiter, live: LiveComparisons
) -> list[Any]:
    """The ``/ws`` routes, counting their sockets in the process's ``connection_limiter`` and
    running comparisons in its ``live`` core."""
    return [
        path("ws", ComparisonConsumer.as_asgi(connection_limiter=connection_limiter, live=live)),
    ]
