"""Create a comparison and build its run (shared by the socket consumer and the commands)."""

from __future__ import annotations

from collections.abc import Sequence

from channels.db import database_sync_to_async

from comparisons import services
from comparisons.runner import ComparisonRun, SlotRun, run_control
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
    """Save a new comparison (one database call) and return its run, not yet started.

    Raises :class:`comparisons.services.LimitExceeded` when the user may not start one now.
    """
    comparison = await database_sync_to_async(services.comparison_create)(
        user_id=user_id,
        prompt=prompt,
        system=system,
        slots=slots,
        replay_of_id=replay_of_id,
        enforce_limits=enforce_limits,
    )
    keys = services.slot_keys([slot.model for slot in slots])
    run = ComparisonRun(
        comparison_id=comparison.id,
        user_id=user_id,
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
    # Reachable from other processes before anyone can know its id.
    await run_control.join(run)
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
