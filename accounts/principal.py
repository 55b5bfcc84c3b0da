"""The outcome of verifying a Clerk session token: a :class:`Principal` or a :class:`TokenError`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in Clerk user, from a verified session token.

    ``user_id`` (the ``sub`` claim, ``user_...``) is the owner key everywhere in the project.
    """

    user_id: str
    session_id: str
    org_id: str | None = None
    org_role: str | None = None
    org_slug: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class TokenError(Exception):
    """A token that was missing, malformed, invalid, or could not be checked.

    ``code`` is stable (clients may branch on it, it is the ``reason`` of a 401); ``message`` is
    for humans. Neither ever contains the token.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"TokenError({self.code!r}, {self.message!r})"


#: The stable failure codes.
TOKEN_MISSING = "token-missing"
TOKEN_TOO_LARGE = "token-too-large"
TOKEN_MALFORMED = "token-malformed"
TOKEN_EXPIRED = "token-expired"
TOKEN_NOT_ACTIVE_YET = "token-not-active-yet"
TOKEN_IAT_IN_FUTURE = "token-iat-in-future"
TOKEN_INVALID_SIGNATURE = "token-invalid-signature"
TOKEN_INVALID_ALGORITHM = "token-invalid-algorithm"
TOKEN_INVALID_TYPE = "token-invalid-type"
TOKEN_INVALID_ISSUER = "token-invalid-issuer"
TOKEN_INVALID_AUTHORIZED_PARTY = "token-invalid-authorized-party"
TOKEN_MISSING_CLAIM = "token-missing-claim"
TOKEN_INVALID_CLAIM = "token-invalid-claim"
TOKEN_SESSION_PENDING = "token-session-pending"
TOKEN_UNKNOWN_KID = "token-unknown-kid"
JWKS_UNAVAILABLE = "jwks-unavailable"
AUTH_NOT_CONFIGURED = "auth-not-configured"
