"""Create a comparison and start its run (shared by the socket consumer and the commands).

The provider requests are not kept waiting for the database: the run gets its id in Python and
its models start streaming while the row is inserted (frames are held until the socket has been
told ``sessionCreated``). The per-user limits stay where they were, in the insert's transaction;
a start they refuse is cancelled before anything reaches the user or the database. So that a
user who keeps hitting a limit does not keep opening provider requests, a start is only started
early when this process's own view says it will be admitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from channels.db import database_sync_to_async
from django.conf import settings

from comparisons import services
from comparisons.models import new_comparison_id
from comparisons.runner import ComparisonRun, SlotRun, run_control, runs
from providers.registry import providers
from providers.types import StreamRequest

#: After a refusal, this user's starts in this process wait for the database first for this long.
REFUSAL_MEMORY_SECONDS = 60.0


class EarlyStartGate:
    """Whether a start may call its providers before the database has admitted it."""

    def __init__(self) -> None:
        self._refused: dict[str, float] = {}

    def allows(self, user_id: str) -> bool:
        until = self._refused.get(user_id)
        if until is not None:
            if until > time.monotonic():
                return False
            del self._refused[user_id]
        return runs.running_for(user_id) < settings.PLAYGROUND_MAX_RUNNING_PER_USER

    def refused(self, user_id: str) -> None:
        now = time.monotonic()
        if len(self._refused) > 10_000:
            self._refused = {u: t for u, t in self._refused.items() if t > now}
        self._refused[user_id] = now + REFUSAL_MEMORY_SECONDS


early_starts = EarlyStartGate()


async def comparison_launch(
    *,
    user_id: str,
    prompt: str,
    system: str = "",
    slots: Sequence[services.SlotSpec],
    replay_of_id: str | None = None,
    enforce_limits: bool = True,
) -> ComparisonRun:
    """Save a new comparison (one database call) and return its running, registered run.

    Its frames are held until :meth:`ComparisonRun.release`: announce the session, then release
    the run to the socket that asked for it. Raises :class:`comparisons.services.LimitExceeded`
    when the user may not start one now (nothing is saved or sent then).
    """
    keys = services.slot_keys([slot.model for slot in slots])
    run = ComparisonRun(
        comparison_id=new_comparison_id(),
        user_id=user_id,
        saved=False,
        slots=[
            SlotRun(
                key=key,
                provider=providers[slot.provider],
                request=StreamRequest(
                    model=slot.model,
                    prompt=prompt,
                    system=system or None,
                    temperature=slot.temperature,
                    max_tokens=slot.max_tokens,
                ),
            )
            for key, slot in zip(keys, slots, strict=True)
        ],
    )
    if not enforce_limits or early_starts.allows(user_id):
        run.start()
    create = database_sync_to_async(services.comparison_create)(
        comparison_id=run.comparison_id,
        user_id=user_id,
        prompt=prompt,
        system=system,
        slots=slots,
        replay_of_id=replay_of_id,
        enforce_limits=enforce_limits,
    )
    # Reachable from other processes before anyone can know its id.
    outcome = await asyncio.gather(create, run_control.join(run), return_exceptions=True)
    failure = next((o for o in outcome if isinstance(o, BaseException)), None)
    if failure is not None:
        run.refuse()
        if not run.started:
            await run_control.leave(run)
        if isinstance(failure, services.LimitExceeded):
            early_starts.refused(user_id)
        raise failure
    run.admit()
    runs.add(run)
    return run


def session_created_payload(run: ComparisonRun, request_id: str | None = None) -> dict[str, object]:
    """The ``sessionCreated`` event's data."""
    data: dict[str, object] = {
        "sessionId": run.comparison_id,
        "models": [
            {"key": s.key, "provider": s.provider.alias, "modelName": s.request.model}
            for s in run.slots
        ],
    }
    if request_id is not None:
        data["requestId"] = request_id
    return data
