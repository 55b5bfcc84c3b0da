"""System checks: production refuses to start without a Clerk key (no development key)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from accounts.keys import issuer_from_publishable_key


@register("accounts")
def clerk_configured(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """accounts.E001: DEBUG off and no Clerk key; E002: a key but no issuer; E003: bad values."""
    errors: list[Error] = []
    has_key = bool(settings.CLERK_JWT_KEY or settings.CLERK_SECRET_KEY)
    if not has_key and not settings.DEBUG:
        errors.append(
            Error(
                "No Clerk key configured (DEBUG is off, so the development key is refused): "
                "set CLERK_JWT_KEY or CLERK_SECRET_KEY.",
                hint="Set CLERK_JWT_KEY or CLERK_SECRET_KEY (and CLERK_PUBLISHABLE_KEY).",
                id="accounts.E001",
            )
        )
    if has_key and not (settings.CLERK_ISSUER or settings.CLERK_PUBLISHABLE_KEY):
        errors.append(
            Error(
                "A Clerk key is configured but not the token issuer.",
                hint="Set CLERK_PUBLISHABLE_KEY (the issuer is derived from it) or CLERK_ISSUER.",
                id="accounts.E002",
            )
        )
    if settings.CLERK_PUBLISHABLE_KEY and not settings.CLERK_ISSUER:
        try:
            issuer_from_publishable_key(settings.CLERK_PUBLISHABLE_KEY)
        except ValueError as exc:
            errors.append(Error(f"CLERK_PUBLISHABLE_KEY is invalid: {exc}.", id="accounts.E003"))
    if settings.CLERK_JWT_KEY:
        from accounts.keys import rsa_public_key_load

        try:
            rsa_public_key_load(settings.CLERK_JWT_KEY)
        except ValueError as exc:
            errors.append(Error(f"CLERK_JWT_KEY is invalid: {exc}.", id="accounts.E004"))
    return errors
