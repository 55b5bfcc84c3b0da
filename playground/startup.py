"""The ASGI application's process start-up, owned by the application under any ASGI server.

``ProcessApplication`` wraps the protocol router. The first time the process serves anything it
runs :func:`process_start` once, on the event loop's thread: on ASGI ``lifespan.startup`` where the
server sends it (uvicorn, hypercorn), else on the first connection (daphne sends no lifespan);
``lifespan.shutdown`` stops what it started (:meth:`ProcessApplication.stop`).
``manage.py serve`` calls :meth:`ProcessApplication.start` itself before listening. Importing the
module changes nothing in the importing process (tests import it and use ``router`` directly).

Under daphne, the first connection also configures the server's protocol limits
(``playground.daphne_server``: 1009 for oversized frames, JSON 431 for oversized headers).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import sniffio

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def process_start() -> Callable[[], None]:
    """Start-up of a serving process; call once, on the thread that runs the event loop.
    Returns the process shutdown: it stops what the start-up left running (the sweeper)."""
    from comparisons.maintenance import start_sweeper

    # Crash recovery: comparisons of a dead process become `interrupted` (in a thread: the sweep
    # is a blocking database call, and a database that is down must not stop the server).
    sweeper = start_sweeper()

    # anyio (under httpx) asks sniffio which async library runs for every read with a timeout, and
    # sniffio answers by inspecting the current task: ~6 % of the server's CPU at 400 streams. The
    # loop's thread runs asyncio only: declare it once, in the thread-local sniffio reads first
    # (a context variable set here would reach only the current task's context).
    sniffio.thread_local.name = "asyncio"

    # The database thread's Python (building a flush of every streaming slot) holds the GIL in
    # switch-interval slices the event loop waits behind: 1 ms instead of CPython's 5 ms hands
    # it back sooner (docs/benchmarks.md: chunk latency at 200 streams, TTFT).
    sys.setswitchinterval(0.001)

    # The SDK imports take ~2 s: in a thread, so the server answers while they load (a comparison
    # started meanwhile waits for the import it needs on Python's import lock).
    threading.Thread(target=_preload_and_freeze, name="provider-preload", daemon=True).start()
    return sweeper.stop


def _preload_and_freeze() -> None:
    from django.conf import settings

    from arena.ratings import ratings_prepare
    from providers.registry import providers

    if settings.PROVIDER_PRELOAD:
        # First (~0.1 s): the SDK imports below take seconds on a busy machine, and a leaderboard
        # asked for meanwhile would be fitted with cold numpy and BLAS on every core. Without the
        # preload numpy too is left to its first use (~0.15 s of CPU a test server start saves).
        ratings_prepare()
        for error in providers.preload():  # SDK imports now, not on the first comparison's loop
            logger.error("Provider not loaded: %s", error)

    # Everything loaded so far (Django, the SDKs: ~280,000 objects) lives as long as the process.
    # Left to the cyclic collector, each full collection scanned all of it with the event loop
    # stopped: 75-100 ms, a stall every stream saw (docs/benchmarks.md). Frozen, it is never scanned.
    gc.collect()
    gc.freeze()


class ProcessApplication:
    """An ASGI application that runs :func:`process_start` once before serving."""

    def __init__(
        self, app: ASGIApp, *, start: Callable[[], Callable[[], None]] = process_start
    ) -> None:
        self.app = app
        self._start = start
        self._started = False
        self._shutdown: Callable[[], None] | None = None
        self._server_seen = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Run the process start-up unless it ran already."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._shutdown = self._start()

    def stop(self) -> None:
        """Stop what the start-up left running (blocking: a sweep under way ends first)."""
        with self._lock:
            shutdown, self._shutdown = self._shutdown, None
        if shutdown is not None:
            shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self._server_seen:
            self._server_seen = True
            self._server_configure(send)
        if not self._started:
            self.start()
        await self.app(scope, receive, send)

    @staticmethod
    def _server_configure(send: Send) -> None:
        if "daphne.server" not in sys.modules:  # another ASGI server: nothing of daphne's to set
            return
        from playground.daphne_server import daphne_configure, daphne_server_of

        server = daphne_server_of(send)
        if server is not None:
            daphne_configure(server)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as exc:
                    logger.exception("Start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                from providers.registry import providers

                await providers.aclose()  # aiohttp logs each provider session dropped open
                # The process may outlive the application (an embedding server, a test): its
                # sweeper must not go on sweeping a database that is gone.
                await asyncio.to_thread(self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return
