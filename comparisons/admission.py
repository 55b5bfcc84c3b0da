"""A start's admission on the event loop (PostgreSQL, serving processes).

The same transaction as :func:`comparisons.services.comparison_create` (the statements of
:func:`comparisons.services._admission_sql`), sent from the event loop on connections of its own:
no hop into the database thread and back, and no GIL for that thread to wait for while the loop
sets the start's provider requests up, so the database's work overlaps that set-up
(docs/benchmarks.md, "Admission on the loop"). Only serving processes use it
(:func:`enable`, from ``playground.startup``): in a test's event loop the connections would
outlive the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections

from comparisons import services
from comparisons.models import Comparison

_enabled = False


def enable() -> None:
    """Admit starts on the event loop from now on in this process (PostgreSQL only)."""
    global _enabled
    _enabled = True


def on_loop() -> bool:
    """Whether this process admits starts on the event loop."""
    return _enabled and connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


class LoopConnections:
    """Idle connections of the event loop that made them (one per concurrent start at most)."""

    def __init__(self) -> None:
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._idle, self._loop = [], loop
        while self._idle:
            database = self._idle.pop()
            if not database.closed:
                return database
        params = connections[DEFAULT_DB_ALIAS].get_connection_params()
        params.pop("cursor_factory", None)  # Django's own cursor and adapters: not needed here
        params.pop("context", None)
        return await psycopg.AsyncConnection.connect(**params, autocommit=True)

    def release(self, database: psycopg.AsyncConnection[Any]) -> None:
        if self._loop is asyncio.get_running_loop() and not database.closed:
            self._idle.append(database)


_connections = LoopConnections()


async def comparison_create(
    *,
    comparison_id: str,
    user_id: str,
    prompt: str,
    system: str,
    slots: Sequence[services.SlotSpec],
    replay_of_id: str | None,
    blind: bool,
) -> Comparison:
    """:func:`comparisons.services.comparison_create` with the limits enforced, on the loop.
    Raises :class:`comparisons.services.LimitExceeded`."""
    if blind and len(slots) < 2:
        raise services.BlindNeedsTwoModels("A blind comparison needs at least two models")
    comparison, responses = services._new_rows(
        comparison_id=comparison_id,
        user_id=user_id,
        prompt=prompt,
        system=system,
        slots=slots,
        replay_of_id=replay_of_id,
        blind=blind,
    )
    lock, (count_sql, count_params), inserts = services._admission_sql(comparison, responses)
    database = await _connections.acquire()
    try:
        cursor, usage = database.cursor(), database.cursor()
        async with database.pipeline():
            await cursor.execute("BEGIN")
            # As in the thread's path: the commit does not wait for the WAL flush.
            await cursor.execute("SET LOCAL synchronous_commit TO OFF")
            await cursor.execute(*lock)
            await usage.execute(count_sql, count_params)
            for sql, params in inserts:
                await cursor.execute(sql, params)
        row = await usage.fetchone() or (0, 0)
        refusal = services._refusal(int(row[0]), int(row[1]))
        await cursor.execute("ROLLBACK" if refusal is not None else "COMMIT")
    except BaseException:
        # Its state is unknown (a cancelled start may have left a query running): never reused.
        with contextlib.suppress(Exception):
            await asyncio.shield(database.close())
        raise
    _connections.release(database)
    if refusal is not None:
        raise refusal
    comparison._state.adding = False
    comparison._state.db = DEFAULT_DB_ALIAS
    return comparison
