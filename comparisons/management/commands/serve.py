"""``manage.py serve``: run the ASGI application under daphne on HOST:PORT from settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


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


def reuse_port_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port with SO_REUSEPORT (every process sharing the port
    sets it; the kernel then hashes each new connection to one of them)."""
    if ":" in host:
        # daphne adopts a descriptor as IPv4 only (its ``fd:`` endpoint takes no family).
        raise CommandError("--reuse-port needs an IPv4 HOST (e.g. 0.0.0.0), not " + host)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(socket.SOMAXCONN)
    return listener


class Command(BaseCommand):
    help = "Serve the ASGI application with daphne on $HOST:$PORT (default 127.0.0.1:3001)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=None, help="Bind address (default: HOST setting).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: PORT setting).")
        parser.add_argument(
            "--reuse-port",
            action="store_true",
            help="Listen with SO_REUSEPORT, so several serve processes share HOST:PORT and the "
            "kernel spreads new connections over them (Linux; needs REDIS_URL and PostgreSQL).",
        )

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
        if options["reuse_port"]:
            # daphne cannot set SO_REUSEPORT itself; it serves a socket bound here instead. Bound
            # and listening before the banner: connections queue from now on.
            listener = reuse_port_listener(host, port)
            argv = ["--fd", str(listener.fileno())]
        else:
            argv = ["-b", host, "-p", str(port)]
        self.stdout.write(
            f"AI Playground API on http://{host}:{port} (WebSocket ws://{host}:{port}/ws, "
            f"event loop: {event_loop_name(twisted_loop)}"
            + (", port shared with SO_REUSEPORT)" if options["reuse_port"] else ")")
        )
        self.stdout.flush()
        cli = CommandLineInterface()
        # Runs when the reactor starts: the listening socket exists, no connection is accepted yet.
        reactor.callWhenRunning(lambda: daphne_configure(cli.server))
        if settings.TRUST_X_FORWARDED_PROTO:
            # X-Forwarded-For/-Port/-Proto from a proxy in front; from anyone else they are lies.
            argv.append("--proxy-headers")
        cli.run([*argv, "playground.asgi:application"])
