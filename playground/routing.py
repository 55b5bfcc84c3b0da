"""WebSocket URL routes, collected from the apps that serve sockets."""

from __future__ import annotations

from typing import Any

from django.urls import path

from accounts.limits import ConnectionLimiter
from comparisons.consumers import ComparisonConsumer


def websocket_urlpatterns(*, connection_limiter: ConnectionLimiter) -> list[Any]:
    """The ``/ws`` routes, counting their sockets in the process's ``connection_limiter``."""
    return [
        path("ws", ComparisonConsumer.as_asgi(connection_limiter=connection_limiter)),
    ]
