"""Crash recovery: comparisons whose process died are marked ``interrupted``.

Every running comparison's flusher refreshes ``heartbeat_at`` each flush interval. A sweep marks
``streaming`` comparisons whose heartbeat is older than ``PLAYGROUND_HEARTBEAT_STALE_SECONDS``
(and their unfinished models) ``interrupted``, keeping the text saved so far. The sweep runs when
the serving process starts (``playground.startup``, under any ASGI server) and then periodically,
in a daemon thread; a sweep that fails (the database is down) is logged and tried again. The
application stops the thread on ``lifespan.shutdown``: a process that outlives its application
(a test, an embedding server) must not keep sweeping a database that is gone.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone

from comparisons import services

logger = logging.getLogger(__name__)


def sweep_stale_comparisons() -> list[str]:
    """Mark stale running comparisons interrupted now; returns their ids."""
    stale_before = timezone.now() - timedelta(seconds=settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS)
    swept = services.comparison_sweep_stale(stale_before=stale_before)
    if swept:
        logger.warning("Marked %d comparison(s) interrupted: %s", len(swept), ", ".join(swept))
    return swept


def _sweep_forever(stop: threading.Lock, interval: float) -> None:
    while True:
        try:
            sweep_stale_comparisons()
        except OperationalError as exc:  # the database is down or unreachable: try again later
            logger.warning("Stale comparison sweep failed: %s", exc)
        except Exception:
            logger.exception("Stale comparison sweep failed")
        finally:
            close_old_connections()
        if stop.acquire(timeout=interval):  # released by Sweeper.stop
            break
    connection.close()  # this thread's own connection: not left open to the database


class Sweeper:
    """The periodic sweep's daemon thread; :meth:`stop` ends it."""

    def __init__(self, interval: float) -> None:
        # A held lock rather than an Event: its timed wait is C code, so the idle thread's top
        # frame stays ``_sweep_forever`` (bench/profile.py counts that frame as idle).
        self._stop = threading.Lock()
        self._stop.acquire()
        self._stopped = False
        self.thread = threading.Thread(
            target=_sweep_forever,
            args=(self._stop, interval),
            name="comparison-sweeper",
            daemon=True,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sweeping; waits (up to ``timeout``) for a sweep under way to end."""
        if not self._stopped:
            self._stopped = True
            self._stop.release()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)


def start_sweeper() -> Sweeper:
    """Sweep now, then every third of the stale threshold, in a daemon thread."""
    sweeper = Sweeper(max(0.5, settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS / 3))
    sweeper.thread.start()
    return sweeper
