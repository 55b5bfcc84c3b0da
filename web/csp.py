"""The page's Content-Security-Policy: only this origin's scripts, styles and sockets (plus
Clerk's Frontend API when Clerk signs users in). No inline script or style is allowed."""

from __future__ import annotations

from django.http import HttpRequest


def content_security_policy(*, request: HttpRequest, clerk_origin: str | None) -> str:
    """The policy for the playground page served to ``request``."""
    socket = ("wss://" if request.is_secure() else "ws://") + request.get_host()
    clerk = [clerk_origin] if clerk_origin else []
    directives = {
        "default-src": ["'none'"],
        "script-src": ["'self'", *clerk],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", *(["https://img.clerk.com"] if clerk else [])],
        "font-src": ["'self'"],
        "connect-src": ["'self'", socket, *clerk],
        # clerk-js runs its token refresh timer in a blob: worker.
        "worker-src": ["'self'", *(["blob:"] if clerk else [])],
        "manifest-src": ["'self'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())
