"""Channels middleware: verifies the handshake's session token (header or ``__session`` cookie).

It passes the inner application a *copy* of the scope with two keys and keeps no per-connection
state itself:

- ``scope["principal"]``: the :class:`~accounts.principal.Principal`, or ``None``;
- ``scope["auth_error"]``: the :class:`~accounts.principal.TokenError` of a handshake token that
  failed verification, or ``None`` (also ``None`` when there was no token at all: the client may
  still authenticate with a first frame, see :class:`accounts.consumers.AuthenticatedJsonConsumer`).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.middleware import BaseMiddleware

from accounts.extract import token_from_scope
from accounts.principal import Principal, TokenError
from accounts.verification import token_verify

logger = logging.getLogger(__name__)


class ClerkAuthMiddleware(BaseMiddleware):
    """Wrap a WebSocket application: ``ClerkAuthMiddleware(URLRouter(...))``."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        principal, error = await _handshake_principal(scope)
        # This frame stays suspended for the socket's life: it keeps no copy of the token.
        return await self.inner(
            {**scope, "principal": principal, "auth_error": error}, receive, send
        )


async def _handshake_principal(scope: dict[str, Any]) -> tuple[Principal | None, TokenError | None]:
    token = token_from_scope(scope)
    if token is None:
        return None, None
    try:
        return await token_verify(token=token), None
    except TokenError as exc:
        logger.info("WebSocket handshake token refused: %s", exc.code)
        return None, exc
