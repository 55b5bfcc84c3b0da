"""Crash recovery: comparisons whose process died are marked ``interrupted``.

Every running comparison's flusher refreshes ``heartbeat_at`` each flush interval. A sweep marks
``streaming`` comparisons whose heartbeat is older than ``PLAYGROUND_HEARTBEAT_STALE_SECONDS``
(and their unfinished models) ``interrupted``, keeping the text saved so far. The sweep runs when
the serving process starts (``playground.startup``, under any ASGI server) and then periodically,
in a daemon thread; a sweep that fails (the database is down) is logged and tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, close_old_connections
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


def _sweep_forever(interval: float) -> None:
    while True:
        try:
            sweep_stale_comparisons()
        except OperationalError as exc:  # the database is down or unreachable: try again later
            logger.warning("Stale comparison sweep failed: %s", exc)
        except Exception:
            logger.exception("Stale comparison sweep failed")
        finally:
            close_old_connections()
        time.sleep(interval)


def start_sweeper() -> threading.Thread:
    """Sweep now, then every third of the stale threshold, in a daemon thread."""
    interval = max(0.5, settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS / 3)
    thread = threading.Thread(
        target=_sweep_forever, args=(interval,), name="comparison-sweeper", daemon=True
    )
    thread.start()
    return thread
