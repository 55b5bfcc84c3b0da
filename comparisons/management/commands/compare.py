"""``manage.py compare "<prompt>" --models provider:model ...``: a comparison from the terminal."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError

from comparisons.cli import parse_model_args, run_in_terminal
from comparisons.services import SlotSpec


class Command(BaseCommand):
    help = "Start a new comparison and stream every model's progress live to the terminal."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("prompt", help="The prompt to send to every model.")
        parser.add_argument(
            "--models",
            nargs="+",
            metavar="PROVIDER[:MODEL]",
            help="Models to compare (default: every configured provider's default model, "
            "or the offline demo provider when no vendor key is set).",
        )
        parser.add_argument("--system", default="", help="Optional system prompt.")
        parser.add_argument("--user", default="user_cli", help="Owner user id (Clerk id).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        from providers.registry import providers

        if options["models"]:
            slots = parse_model_args(options["models"])
        else:
            configured = [
                alias
                for alias in providers.aliases()
                if alias != "demo" and providers[alias].is_configured
            ]
            if not configured:
                self.stderr.write(
                    "No vendor API key is configured: using the offline demo provider."
                )
                configured = ["demo"]
            slots = [SlotSpec(provider=a, model=providers[a].default_model) for a in configured]
        if any(slot.provider == "demo" for slot in slots) and not options["json"]:
            self.stdout.write("Note: 'demo' is the offline demo provider, not a real model.")
        result = asyncio.run(
            run_in_terminal(
                user_id=options["user"],
                prompt=options["prompt"],
                system=options["system"],
                slots=slots,
                out=None if options["json"] else cast(TextIO, self.stdout._out),
            )
        )
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
        if result["status"] == "error":
            raise CommandError("Every model failed.", returncode=1)
