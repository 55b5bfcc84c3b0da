"""Where a session token is read from: ``Authorization: Bearer`` first, else the ``__session`` cookie.

Any other authorization scheme counts as no header token. Tokens are never read from URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.http import HttpRequest
from django.http.cookie import parse_cookie

SESSION_COOKIE = "__session"


def token_from_authorization(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else ``None``."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_from_cookie_header(value: str | None) -> str | None:
    """The ``__session`` cookie of a ``Cookie`` header value, else ``None``."""
    if not value:
        return None
    return parse_cookie(value).get(SESSION_COOKIE) or None


def token_from_request(request: HttpRequest) -> str | None:
    """The session token of a Django request (header first, then cookie)."""
    return token_from_authorization(request.headers.get("Authorization")) or (
        request.COOKIES.get(SESSION_COOKIE) or None
    )


def token_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session token of raw ASGI headers (header first, then cookie)."""
    authorization: str | None = None
    cookies: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif lowered == b"cookie":
            cookies.append(value.decode("latin-1"))
    return token_from_authorization(authorization) or token_from_cookie_header("; ".join(cookies))


def token_from_scope(scope: Mapping[str, Any]) -> str | None:
    """The session token of an ASGI scope's handshake headers."""
    return token_from_headers(scope.get("headers") or ())
