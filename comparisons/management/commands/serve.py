"""``manage.py serve``: run the ASGI application under daphne on HOST:PORT from settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


def staticfiles_outdated() -> bool:
    """Whether the collected static files (outside DEBUG) are missing or older than a source.

    Without them the admin fails ("Missing staticfiles manifest entry"); stale after an upgrade,
    it would reference files that were never collected.
    """
    from django.contrib.staticfiles.finders import get_finders

    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.exists():
        return True
    collected_at = manifest.stat().st_mtime
    for finder in get_finders():
        for path, storage in finder.list([]):
            if os.stat(storage.path(path)).st_mtime > collected_at:
                return True
    return False


class Command(BaseCommand):
    help = "Serve the ASGI application with daphne on $HOST:$PORT (default 127.0.0.1:3001)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=None, help="Bind address (default: HOST setting).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: PORT setting).")

    def handle(self, *args: Any, **options: Any) -> None:
        # Before the application loads: WhiteNoise indexes STATIC_ROOT when it is created.
        if not settings.DEBUG and staticfiles_outdated():
            self.stdout.write(f"Collecting static files into {settings.STATIC_ROOT}")
            call_command("collectstatic", interactive=False, verbosity=0)

        from daphne.cli import CommandLineInterface
        from daphne.server import twisted_loop
        from twisted.internet import reactor

        from playground.asgi import application
        from playground.daphne_server import daphne_configure
        from playground.eventloop import event_loop_name

        # The process start-up (crash sweep, provider preload, heap freeze) before listening,
        # rather than on the first connection; daphne runs its loop on this thread.
        application.start()

        host = options["host"] or settings.HOST
        port = options["port"] or settings.PORT
        self.stdout.write(
            f"AI Playground API on http://{host}:{port} (WebSocket ws://{host}:{port}/ws, "
            f"event loop: {event_loop_name(twisted_loop)})"
        )
        self.stdout.flush()
        cli = CommandLineInterface()
        # Runs when the reactor starts: the listening socket exists, no connection is accepted yet.
        reactor.callWhenRunning(lambda: daphne_configure(cli.server))
        argv = ["-b", host, "-p", str(port)]
        if settings.TRUST_X_FORWARDED_PROTO:
            # X-Forwarded-For/-Port/-Proto from a proxy in front; from anyone else they are lies.
            argv.append("--proxy-headers")
        cli.run([*argv, "playground.asgi:application"])
