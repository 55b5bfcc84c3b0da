"""Shared pieces of the terminal commands (``compare``, ``replay``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from channels.db import database_sync_to_async
from django.core.management.base import CommandError

from comparisons import selectors, services
from comparisons.live.core import LiveComparisons
from comparisons.terminal import display_live, summary_table
from providers.registry import providers


def parse_model_args(values: Sequence[str]) -> list[services.SlotSpec]:
    """``provider[:model]`` arguments -> validated slots; one clear CommandError otherwise."""
    from comparisons.frames import ModelChoice

    choices = []
    for value in values:
        provider, _, model = value.partition(":")
        choices.append(ModelChoice(provider=provider, model=model or None))
    try:
        return services.comparison_plan(choices=choices)
    except services.PlanError as exc:
        raise CommandError(str(exc)) from None


def comparison_result(comparison_id: str) -> dict[str, Any]:
    """The saved comparison as the REST API shows it."""
    from comparisons.schemas import SessionOut

    comparison = selectors.comparison_get_any(comparison_id=comparison_id)
    if comparison is None:
        raise CommandError(f"Comparison {comparison_id} not found.")
    return SessionOut.from_orm(comparison).model_dump(mode="json", by_alias=True)


async def run_in_terminal(
    *,
    user_id: str,
    prompt: str,
    system: str,
    slots: Sequence[services.SlotSpec],
    out: TextIO | None,
    replay_of_id: str | None = None,
    original: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run a new comparison here, showing live progress on ``out`` (if given); return its result."""
    try:
        return await _run_in_terminal(
            user_id=user_id,
            prompt=prompt,
            system=system,
            slots=slots,
            out=out,
            replay_of_id=replay_of_id,
            original=original,
        )
    finally:
        await providers.aclose()  # before the command's loop ends: no unclosed HTTP sessions


async def _run_in_terminal(
    *,
    user_id: str,
    prompt: str,
    system: str,
    slots: Sequence[services.SlotSpec],
    out: TextIO | None,
    replay_of_id: str | None,
    original: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    live = LiveComparisons()  # this command's own process
    try:
        run = await live.launch(
            user_id=user_id,
            prompt=prompt,
            system=system,
            slots=slots,
            replay_of_id=replay_of_id,
            enforce_limits=False,
        )
    except services.LimitExceeded as exc:  # pragma: no cover - limits are off for the CLI
        raise CommandError(str(exc)) from None
    if out is not None:
        out.write(f"Comparison {run.comparison_id}\n")
    task = run.start()  # already started; its task ends with the comparison
    await run.release()
    if out is not None:
        await display_live(run, out)
    await task
    result = await database_sync_to_async(comparison_result)(run.comparison_id)
    if out is not None:
        rows = [
            {"key": key, "status": r["status"], "metrics": r["metrics"]}
            for key, r in result["responses"].items()
        ]
        out.write("\n" + summary_table(rows, original) + "\n")
        out.write(f"\nStatus: {result['status']}\n")
        out.flush()
    return result
