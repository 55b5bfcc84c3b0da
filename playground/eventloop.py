"""The event loop ``manage.py serve`` runs on: uvloop by default, asyncio's own on request.

daphne creates its loop when ``daphne.server`` is first imported (Django imports it while setting
up the ``daphne`` app), so the choice is made in ``manage.py`` before Django starts. uvloop's
selector and transports are C: at 400 streams the standard loop spent about a fifth of the
server's samples registering and unregistering sockets (``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["EVENT_LOOPS", "event_loop_install", "event_loop_name"]

EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_install(*, name: str | None = None) -> str:
    """Make the process's new event loops ``name`` (default: ``$PLAYGROUND_EVENT_LOOP`` or
    uvloop); returns the loop that will run. uvloop falls back to asyncio where it is not
    installed (it has no Windows build)."""
    name = name or os.environ.get("PLAYGROUND_EVENT_LOOP") or "uvloop"
    if name not in EVENT_LOOPS:
        raise SystemExit(
            f"PLAYGROUND_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, not {name!r}"
        )
    if name == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def event_loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: which implementation ``loop`` is."""
    return type(loop).__module__.partition(".")[0]
