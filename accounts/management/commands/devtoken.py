"""``manage.py devtoken``: a session token signed by the local development key (DEBUG only)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.services import DEV_USER_ID, dev_token_mint
from accounts.verification import clerk_key_configured


class Command(BaseCommand):
    help = "Print a session token signed by the development key (DJANGO_DEBUG=1, no Clerk key)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--user", default=DEV_USER_ID, help=f"The sub claim (default {DEV_USER_ID})."
        )
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
