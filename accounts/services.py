"""Writes of the accounts app: minting development session tokens."""

from __future__ import annotations

import time
import uuid

import jwt
from django.conf import settings

from accounts.keys import DEV_ISSUER, DEV_KID, dev_private_key
from accounts.verification import clerk_key_configured

#: The user the playground page signs in as with the development key.
DEV_USER_ID = "user_dev"


class DevSignInRefused(Exception):
    """The development key is not accepted here (production, or a Clerk key is configured)."""


def dev_sign_in_allowed() -> bool:
    """Development tokens are verified only with ``DJANGO_DEBUG=1`` and no Clerk key."""
    return bool(settings.DEBUG) and not clerk_key_configured()


def dev_token_mint(*, user_id: str, ttl: int, now: int | None = None) -> str:
    """A token for ``user_id`` signed by the development key in ``settings.DATA_DIR``."""
    if not dev_sign_in_allowed():
        raise DevSignInRefused(
            "The development key is only accepted with DJANGO_DEBUG=1 and no Clerk key."
        )
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": DEV_ISSUER,
        "sub": user_id,
        "sid": f"sess_dev_{uuid.uuid4().hex[:16]}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "v": 2,
    }
    return jwt.encode(
        claims, dev_private_key(settings.DATA_DIR), algorithm="RS256", headers={"kid": DEV_KID}
    )
