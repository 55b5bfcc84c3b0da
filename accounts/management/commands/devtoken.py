"""``manage.py devtoken``: a session token signed by the local development key (DEBUG only)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.keys import DEV_ISSUER, DEV_KID, dev_private_key
from accounts.verification import clerk_key_configured


def dev_token_mint(*, user_id: str, ttl: int, now: int | None = None) -> str:
    """A token for ``user_id`` signed by the development key in ``settings.DATA_DIR``."""
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


class Command(BaseCommand):
    help = "Print a session token signed by the development key (DJANGO_DEBUG=1, no Clerk key)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", default="user_dev", help="The sub claim (default user_dev).")
        parser.add_argument("--ttl", type=int, default=3600, help="Lifetime in seconds.")

    def handle(self, *args: Any, **options: Any) -> None:
        if clerk_key_configured():
            raise CommandError(
                "A Clerk key is configured: the server verifies Clerk tokens, not development ones."
            )
        if not settings.DEBUG:
            raise CommandError("The development key is only accepted with DJANGO_DEBUG=1.")
        if options["ttl"] <= 0:
            raise CommandError("--ttl must be positive.")
        self.stdout.write(dev_token_mint(user_id=options["user"], ttl=options["ttl"]))
