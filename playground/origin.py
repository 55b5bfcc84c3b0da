"""Channels' origin validation for the WebSocket router, with the HTTP CORS origins."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class BrowserOriginValidator(OriginValidator):
    """Reject browser sockets from origins outside ``CORS_ORIGIN``, except the server's own.

    A request without an ``Origin`` header is not a browser's (browsers always send one on a
    WebSocket handshake), so it cannot be a cross-site request and is let through; clients such
    as the CLI, the benchmark and server-to-server callers still need a valid token. A page this
    server served itself (``/playground/``) connects from the origin whose host is the handshake's
    ``Host``; that is same-origin and accepted when the host is one of ``ALLOWED_HOSTS``.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin: bytes | None = None
        host: bytes | None = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                origin = value
            elif name == b"host":
                host = value
        if origin is None or _same_origin(origin, host) or self._listed(origin):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    def _listed(self, origin: bytes) -> bool:
        try:
            parsed: ParseResult = urlparse(origin.decode("latin1"))
        except ValueError:
            return False
        return bool(self.validate_origin(parsed))


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    if host is None:
        return False
    try:
        parsed = urlparse(origin.decode("latin1"))
        host_text = host.decode("latin1").lower()
    except ValueError:
        return False
    if parsed.scheme not in ("http", "https") or parsed.netloc.lower() != host_text:
        return False
    domain, _port = split_domain_port(host_text)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def origin_validator(application: Any, allowed_origins: list[str]) -> BrowserOriginValidator:
    """Wrap ``application`` so only the allowed browser origins may open a socket."""
    return BrowserOriginValidator(application, allowed_origins)
