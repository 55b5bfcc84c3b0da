"""Channels' origin validation for the WebSocket router, with the HTTP CORS origins."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator


class BrowserOriginValidator(OriginValidator):
    """Reject browser sockets from origins outside ``CORS_ORIGIN``.

    A request without an ``Origin`` header is not a browser's (browsers always send one on a
    WebSocket handshake), so it cannot be a cross-site request and is let through; clients such
    as the CLI, the benchmark and server-to-server callers still need a valid token.
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def origin_validator(application: Any, allowed_origins: list[str]) -> BrowserOriginValidator:
    """Wrap ``application`` so only the allowed browser origins may open a socket."""
    return BrowserOriginValidator(application, allowed_origins)
