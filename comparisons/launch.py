"""Create a comparison and start its run (shared by the socket consumer and the commands).

Admission comes first: the per-user limits are checked under a per-user lock in the same
transaction that inserts the row (on PostgreSQL, lock + count + insert + commit in two round
trips), so they hold across every server process sharing the database, and a refused start
reaches no provider. Only an admitted run calls its providers; its frames are held until the
socket has been told ``sessionCreated``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from channels.db import database_sync_to_async

from comparisons import services
from comparisons.models import new_comparison_id
from comparisons.runner import ComparisonRun, SlotRun, run_control, runs
from providers.registry import providers
from providers.types import StreamRequest


async def comparison_launch(
    *,
    user_id: str,
    prompt: str,
    system: str = "",
    slots: Sequence[services.SlotSpec],
    replay_of_id: str | None = None,
    enforce_limits: bool = True,
) -> ComparisonRun:
    """Save a new comparison (one database call), then start and register its run.

    Its frames are held until :meth:`ComparisonRun.release`: announce the session, then release
    the run to the socket that asked for it. Raises :class:`comparisons.services.LimitExceeded`
    when the user may not start one now (nothing is saved, sent or called then).
    """
    keys = services.slot_keys([slot.model for slot in slots])
    run = ComparisonRun(
        comparison_id=new_comparison_id(),
        user_id=user_id,
        held=True,
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
        await run_control.leave(run)
        raise failure
    runs.add(run)  # starts it: the first upstream request follows the admission
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
