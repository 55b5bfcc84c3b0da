"""The playground page and its development sign-in endpoint."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe

from accounts.keys import issuer_from_publishable_key
from accounts.services import DEV_USER_ID, DevSignInRefused, dev_sign_in_allowed, dev_token_mint
from web.csp import content_security_policy

#: clerk-js, pinned to its major version, from the instance's own Frontend API.
CLERK_JS_PATH = "/npm/@clerk/clerk-js@5/dist/clerk.browser.js"


def _clerk_origin() -> str | None:
    key = settings.CLERK_PUBLISHABLE_KEY
    return issuer_from_publishable_key(key) if key else None


@require_safe
@ensure_csrf_cookie
@never_cache
def playground_page(request: HttpRequest) -> HttpResponse:
    """The single-page client: compose, stream side by side, history, export."""
    clerk_origin = _clerk_origin()
    if clerk_origin:
        auth = "clerk"
    elif dev_sign_in_allowed():
        auth = "dev"
    else:
        auth = "none"
    context = {
        "auth": auth,
        "clerk_publishable_key": settings.CLERK_PUBLISHABLE_KEY if clerk_origin else "",
        "clerk_script": f"{clerk_origin}{CLERK_JS_PATH}" if clerk_origin else "",
        "max_models": settings.PLAYGROUND_MAX_MODELS,
        "max_prompt_chars": settings.PLAYGROUND_MAX_PROMPT_CHARS,
    }
    response = render(request, "web/playground.html", context)
    response["Content-Security-Policy"] = content_security_policy(
        request=request, clerk_origin=clerk_origin
    )
    return response


@require_POST
@never_cache
def dev_token(request: HttpRequest) -> JsonResponse:
    """A short-lived development token for the fixed dev user, for the page to keep in memory.

    Same-origin POST with Django's CSRF check; 404 unless ``DJANGO_DEBUG=1`` with no Clerk key.
    """
    ttl = settings.PLAYGROUND_DEV_TOKEN_TTL_SECONDS
    try:
        token = dev_token_mint(user_id=DEV_USER_ID, ttl=ttl)
    except DevSignInRefused as exc:
        return JsonResponse({"statusCode": 404, "message": str(exc)}, status=404)
    return JsonResponse({"token": token, "userId": DEV_USER_ID, "expiresInSeconds": ttl})
