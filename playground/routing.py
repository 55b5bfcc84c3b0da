"""WebSocket URL routes, collected from the apps that serve sockets."""

from __future__ import annotations

from typing import Any

from django.urls import path

from comparisons.consumers import ComparisonConsumer

websocket_urlpatterns: list[Any] = [
    path("ws", ComparisonConsumer.as_asgi()),
]
