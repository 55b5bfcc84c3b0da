"""``manage.py serve``: run the ASGI application under daphne on HOST:PORT from settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the ASGI application with daphne on $HOST:$PORT (default 127.0.0.1:3001)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=None, help="Bind address (default: HOST setting).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: PORT setting).")

    def handle(self, *args: Any, **options: Any) -> None:
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
