"""Clerk session-token verification: one verifier for HTTP and WebSocket.

Checks, in order: size cap, three base64url segments, header (``alg`` RS256 only, ``typ`` JWT when
present), the signature with the key of the configured source, then the claims. PyJWT checks the
standard ones (``exp``, ``iat``, ``sub``, ``sid`` required; ``exp``/``nbf``/``iat`` with
``CLERK_CLOCK_SKEW_SECONDS`` of leeway; ``iss`` equal to the configured issuer) and its exceptions
map onto our reason codes. Ours on top: ``exp``/``nbf``/``iat`` must be JSON integers (PyJWT
accepts ``"123"``, ``1.5`` and ``true``), ``sub``/``sid`` non-empty strings, ``azp`` listed in
``CLERK_AUTHORIZED_PARTIES`` when that is set, and ``sts: pending`` is signed out.

The key source and issuer are chosen lazily from settings on first use (:func:`verifier_get`) and
forgotten whenever a setting changes in tests (``setting_changed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from accounts.keys import (
    DEV_ISSUER,
    JwksKeySource,
    KeySource,
    StaticKeySource,
    dev_private_key,
    issuer_from_publishable_key,
)
from accounts.principal import (
    AUTH_NOT_CONFIGURED,
    TOKEN_EXPIRED,
    TOKEN_IAT_IN_FUTURE,
    TOKEN_INVALID_ALGORITHM,
    TOKEN_INVALID_AUTHORIZED_PARTY,
    TOKEN_INVALID_CLAIM,
    TOKEN_INVALID_ISSUER,
    TOKEN_INVALID_SIGNATURE,
    TOKEN_INVALID_TYPE,
    TOKEN_MALFORMED,
    TOKEN_MISSING,
    TOKEN_MISSING_CLAIM,
    TOKEN_NOT_ACTIVE_YET,
    TOKEN_SESSION_PENDING,
    TOKEN_TOO_LARGE,
    Principal,
    TokenError,
)

#: Tokens longer than this are refused before any parsing (Clerk's are ~1-2 KB).
MAX_TOKEN_BYTES = 8 * 1024
ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sid")
TIME_CLAIMS = ("exp", "nbf", "iat")


class _ClerkJWT(jwt.PyJWT):
    """PyJWT with integer-only time claims.

    ``_decode_payload`` is PyJWT's documented hook between the signature check and its claim
    checks, so the types are checked on signed claims before PyJWT's ``int()`` coerces them.
    """

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        payload = super()._decode_payload(decoded)
        for name in TIME_CLAIMS:
            value = payload.get(name)
            if value is not None and type(value) is not int:  # not bool, float or str
                raise TokenError(TOKEN_INVALID_CLAIM, f"The {name} claim must be an integer")
        return payload


_JWT = _ClerkJWT()


@dataclass(frozen=True, slots=True)
class Verifier:
    """A configured verifier: where keys come from and what the claims must say."""

    keys: KeySource
    issuer: str
    authorized_parties: tuple[str, ...] = ()
    clock_skew: int = 5

    async def verify(self, token: str) -> Principal:
        header = _header(token)
        key = await self.keys.key(header.get("kid"))
        return self._claims(token, key)

    def _claims(self, token: str, key: Any) -> Principal:
        try:
            claims = _JWT.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.clock_skew,
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            raise TokenError(TOKEN_INVALID_SIGNATURE, "The token signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(TOKEN_INVALID_ALGORITHM, "Only RS256 tokens are accepted") from None
        except jwt.ExpiredSignatureError:
            raise TokenError(TOKEN_EXPIRED, "The token has expired") from None
        except jwt.ImmatureSignatureError as exc:
            # PyJWT raises the same class for a future iat and nbf; its message names the claim.
            if "(iat)" in str(exc):
                raise TokenError(
                    TOKEN_IAT_IN_FUTURE, "The token was issued in the future (iat)"
                ) from None
            raise TokenError(TOKEN_NOT_ACTIVE_YET, "The token is not valid yet (nbf)") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "iss":
                raise TokenError(
                    TOKEN_INVALID_ISSUER, "The token issuer (iss) is not accepted"
                ) from None
            raise TokenError(TOKEN_MISSING_CLAIM, f"The token has no {exc.claim} claim") from None
        except jwt.InvalidIssuerError:
            raise TokenError(
                TOKEN_INVALID_ISSUER, "The token issuer (iss) is not accepted"
            ) from None
        except jwt.exceptions.InvalidSubjectError:
            raise TokenError(TOKEN_INVALID_CLAIM, "The sub claim must be a string") from None
        except jwt.PyJWTError:
            raise TokenError(TOKEN_MALFORMED, "The token is malformed") from None
        return _principal(claims, authorized_parties=self.authorized_parties)


def _header(token: str) -> dict[str, Any]:
    """The unverified header, after the size and shape checks; checks ``alg`` and ``typ``."""
    if not token:
        raise TokenError(TOKEN_MISSING, "No token was provided")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(TOKEN_TOO_LARGE, f"The token is larger than {MAX_TOKEN_BYTES} bytes")
    segments = token.split(".")
    if not token.isascii() or len(segments) != 3 or not segments[0] or not segments[1]:
        raise TokenError(TOKEN_MALFORMED, "The token is not a JWT (three segments)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError(TOKEN_MALFORMED, "The token header is not valid base64url JSON") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(TOKEN_INVALID_ALGORITHM, "Only RS256 tokens are accepted")
    if "typ" in header and header["typ"] != "JWT":
        raise TokenError(TOKEN_INVALID_TYPE, "The token type (typ) must be JWT")
    if not segments[2]:
        raise TokenError(TOKEN_INVALID_SIGNATURE, "The token has no signature")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError(TOKEN_MALFORMED, "The token key id (kid) is not a string")
    return header


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]  # present: PyJWT checked the required claims
    if not isinstance(value, str) or not value:
        raise TokenError(TOKEN_INVALID_CLAIM, f"The {name} claim must be a non-empty string")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _principal(claims: Mapping[str, Any], *, authorized_parties: tuple[str, ...]) -> Principal:
    """The :class:`Principal` of claims PyJWT verified, after the checks PyJWT does not make."""
    user_id = _str_claim(claims, "sub")
    session_id = _str_claim(claims, "sid")
    if authorized_parties and claims.get("azp") not in authorized_parties:
        raise TokenError(
            TOKEN_INVALID_AUTHORIZED_PARTY, "The token authorized party (azp) is not accepted"
        )
    if claims.get("sts") == "pending":
        raise TokenError(TOKEN_SESSION_PENDING, "The session is pending: not signed in yet")
    # Organization: session token v2 nests it in "o" {id, rol, slg}; v1 has flat claims.
    org_claim = claims.get("o")
    org: Mapping[str, Any] = org_claim if isinstance(org_claim, Mapping) else {}
    return Principal(
        user_id=user_id,
        session_id=session_id,
        org_id=_optional_str(org.get("id")) or _optional_str(claims.get("org_id")),
        org_role=_optional_str(org.get("rol")) or _optional_str(claims.get("org_role")),
        org_slug=_optional_str(org.get("slg")) or _optional_str(claims.get("org_slug")),
        claims=MappingProxyType(dict(claims)),
    )


# --- Configuration from settings ----------------------------------------------------------------
_verifier: Verifier | None = None


def clerk_key_configured() -> bool:
    """Whether a real Clerk key (``CLERK_JWT_KEY`` or ``CLERK_SECRET_KEY``) is configured."""
    return bool(settings.CLERK_JWT_KEY or settings.CLERK_SECRET_KEY)


def clerk_issuer() -> str:
    """The expected ``iss``: ``CLERK_ISSUER``, else derived from ``CLERK_PUBLISHABLE_KEY``."""
    if settings.CLERK_ISSUER:
        return str(settings.CLERK_ISSUER).rstrip("/")
    if settings.CLERK_PUBLISHABLE_KEY:
        return issuer_from_publishable_key(settings.CLERK_PUBLISHABLE_KEY)
    raise ValueError("set CLERK_PUBLISHABLE_KEY or CLERK_ISSUER")


def verifier_build() -> Verifier:
    """A verifier from the current settings; :class:`TokenError` ``auth-not-configured`` if none."""
    skew = int(settings.CLERK_CLOCK_SKEW_SECONDS)
    parties = tuple(settings.CLERK_AUTHORIZED_PARTIES)
    try:
        if settings.CLERK_JWT_KEY:
            keys: KeySource = StaticKeySource.from_pem(settings.CLERK_JWT_KEY)
        elif settings.CLERK_SECRET_KEY:
            keys = JwksKeySource(
                api_url=settings.CLERK_API_URL,
                secret_key=settings.CLERK_SECRET_KEY,
                cache_seconds=float(settings.CLERK_JWKS_CACHE_SECONDS),
            )
        elif settings.DEBUG:
            private_key = dev_private_key(settings.DATA_DIR)
            return Verifier(StaticKeySource(private_key.public_key()), DEV_ISSUER, parties, skew)
        else:
            raise ValueError("no Clerk key configured: set CLERK_JWT_KEY or CLERK_SECRET_KEY")
        return Verifier(keys, clerk_issuer(), parties, skew)
    except ValueError as exc:
        raise TokenError(AUTH_NOT_CONFIGURED, f"Authentication is not configured: {exc}") from None


def verifier_get() -> Verifier:
    """The verifier for the current settings, built on first use and then reused."""
    global _verifier
    if _verifier is None:
        _verifier = verifier_build()
    return _verifier


def verifier_reset() -> None:
    """Forget the verifier (and its JWKS cache); the next verification re-reads settings."""
    global _verifier
    _verifier = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CLERK_") or setting in ("DEBUG", "DATA_DIR"):
        verifier_reset()


async def token_verify(*, token: str) -> Principal:
    """Verify a Clerk session token: the :class:`Principal`, or raises :class:`TokenError`."""
    return await verifier_get().verify(token)
