"""HTTP authentication for Django Ninja: every endpoint is protected unless it opts out.

``NinjaAPI(auth=ClerkAuth())`` protects the whole API; a public endpoint passes ``auth=None``.
Failures raise :class:`AuthenticationFailed`, which :func:`unauthorized_response` (registered as an
exception handler on the API) turns into the NestJS-style 401 body
``{"statusCode": 401, "message": "Unauthorized", "reason": "<code>"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja.security.base import AuthBase

from accounts.extract import token_from_request
from accounts.principal import TOKEN_MISSING, Principal, TokenError
from accounts.verification import token_verify

logger = logging.getLogger(__name__)


class AuthenticationFailed(Exception):
    """A request without a valid session token; ``reason`` is the :class:`TokenError` code."""

    def __init__(self, reason: str, message: str = "Unauthorized") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ClerkAuth(AuthBase):
    """Ninja auth: ``Authorization: Bearer <jwt>`` or the ``__session`` cookie.

    On success ``request.auth`` is the :class:`~accounts.principal.Principal`. Async, so the JWKS
    is never fetched with a blocking call on the event loop (Ninja runs it via ``async_to_sync``
    for sync views).
    """

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_bearerFormat = "JWT"
    is_async = True

    async def __call__(self, request: HttpRequest) -> Principal:
        token = token_from_request(request)
        if token is None:
            raise AuthenticationFailed(TOKEN_MISSING, "No session token")
        try:
            principal = await token_verify(token=token)
        except TokenError as exc:
            logger.info("HTTP authentication refused: %s (%s)", exc.code, exc.message)
            raise AuthenticationFailed(exc.code, exc.message) from None
        request.principal = principal  # type: ignore[attr-defined]
        return principal


def unauthorized_response(
    api: Any, request: HttpRequest, exc: AuthenticationFailed
) -> HttpResponse:
    """The 401 response of a failed authentication (never echoes the token)."""
    response: HttpResponse = api.create_response(
        request, {"statusCode": 401, "message": "Unauthorized", "reason": exc.reason}, status=401
    )
    response["WWW-Authenticate"] = (
        "Bearer"
        if exc.reason == TOKEN_MISSING
        else f'Bearer error="invalid_token", reason="{exc.reason}"'
    )
    return response


def principal(request: HttpRequest) -> Principal:
    """The :class:`Principal` of an authenticated request (the seed's ``@CurrentUser()``)."""
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Principal):
        raise AuthenticationFailed(TOKEN_MISSING, "The endpoint is not authenticated")
    return auth


def user_id(request: HttpRequest) -> str:
    """The Clerk user id (``sub``) of an authenticated request (the seed's ``@UserId()``)."""
    return principal(request).user_id
