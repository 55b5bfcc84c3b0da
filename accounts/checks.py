"""System checks: production refuses to start without a Clerk key (no development key), and
``check --deploy`` warns about settings that let other sites use a signed-in user's credentials."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

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


@register(Tags.security, deploy=True)
def cross_origin_credentials(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """accounts.W001: ``CORS_ORIGIN`` allows every origin; W002: any ``azp`` is accepted."""
    warnings: list[Warning] = []
    if "*" in settings.CORS_ORIGIN:
        warnings.append(
            Warning(
                "CORS_ORIGIN allows every origin ('*'): any website a signed-in user visits can "
                "read API responses with their session cookie and open /ws in their name.",
                hint="List the front-end origins, e.g. CORS_ORIGIN=https://app.example.com.",
                id="accounts.W001",
            )
        )
    if not settings.CLERK_AUTHORIZED_PARTIES:
        warnings.append(
            Warning(
                "CLERK_AUTHORIZED_PARTIES is not set: tokens are accepted whatever their azp "
                "(the origin they were issued to), including another site's on the same Clerk "
                "instance.",
                hint="Set CLERK_AUTHORIZED_PARTIES to the front-end origins.",
                id="accounts.W002",
            )
        )
    return warnings
