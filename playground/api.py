"""The REST API (Django Ninja): one NinjaAPI, routers contributed by the apps, OpenAPI at /docs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError

from accounts.http import AuthenticationFailed, ClerkAuth, unauthorized_response
from accounts.principal import TOKEN_MISSING
from arena.errors import ArenaError

api = NinjaAPI(
    title="AI Playground API",
    version="1.0.0",
    description=(
        "Compare LLM answers side by side. WebSocket protocol: docs/protocol.md. "
        "The playground page (a browser client of this API) is at [/playground/](/playground/)."
    ),
    urls_namespace="api",
    # Protected by default: a public endpoint opts out with auth=None.
    auth=ClerkAuth(),
)


@api.exception_handler(AuthenticationFailed)
def _unauthorized(request: HttpRequest, exc: AuthenticationFailed) -> HttpResponse:
    return unauthorized_response(api, request, exc)


@api.exception_handler(AuthenticationError)
def _ninja_unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return unauthorized_response(api, request, AuthenticationFailed(TOKEN_MISSING))


@api.exception_handler(ArenaError)
def _arena_refusal(request: HttpRequest, exc: ArenaError) -> HttpResponse:
    return api.create_response(
        request, {"statusCode": exc.status, "message": exc.message}, status=exc.status
    )


api.add_router("", "accounts.api.router")
api.add_router("", "comparisons.api.router")
api.add_router("", "providers.api.router")
api.add_router("", "arena.api.router")
api.add_router("", "arena.api.public")
