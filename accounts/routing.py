"""WebSocket routes of the accounts app: none (``/ws`` is served by the comparisons consumer)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
