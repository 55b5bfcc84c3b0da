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
        principal: Principal | None = None
        error: TokenError | None = None
        token = token_from_scope(scope)
        if token is not None:
            try:
                principal = await token_verify(token=token)
            except TokenError as exc:
                logger.info("WebSocket handshake token refused: %s", exc.code)
                error = exc
        scope = {**scope, "principal": principal, "auth_error": error}
        return await self.inner(scope, receive, send)
