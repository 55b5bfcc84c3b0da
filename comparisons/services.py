"""Write-side business logic for comparisons (HackSoft style: ``<entity>_<action>``).

Every function here is synchronous and does one unit of database work; async callers cross the
boundary once per call with ``sync_to_async``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from comparisons.models import (
    RESPONSE_FINISHED,
    Comparison,
    ComparisonStatus,
    ModelResponse,
    ResponseStatus,
)


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One model slot requested for a comparison."""

    provider: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(slots=True)
class ResponseProgress:
    """The state of one slot to persist (a flush while streaming, or its final state)."""

    key: str
    status: str
    content: str
    chunk_count: int
    timeline: list[list[float]] = field(default_factory=list)
    error: str = ""
    finish_reason: str = ""
    duration_ms: float | None = None
    time_to_first_token_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    tokens_per_second: float | None = None
    estimated_cost: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


PROGRESS_FIELDS = [
    "status",
    "content",
    "chunk_count",
    "timeline",
    "error",
    "finish_reason",
    "duration_ms",
    "time_to_first_token_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "tokens_per_second",
    "estimated_cost",
    "started_at",
    "finished_at",
]


def slot_keys(model_names: Sequence[str]) -> list[str]:
    """Slot keys: the model name, suffixed ``#2``, ``#3`` when it appears again."""
    seen: dict[str, int] = {}
    keys = []
    for name in model_names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


class LimitExceeded(Exception):
    """The user may not start another comparison now; the message says why."""


def _lock_user(user_id: str) -> None:
    """Serialise concurrent starts of one user (PostgreSQL advisory lock; SQLite's IMMEDIATE
    transactions already serialise writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"comparison:{user_id}"])


def _check_limits(user_id: str) -> None:
    running_limit = settings.PLAYGROUND_MAX_RUNNING_PER_USER
    rate_limit = settings.PLAYGROUND_MAX_STARTS_PER_MINUTE
    mine = Comparison.objects.filter(user_id=user_id)
    running = mine.filter(status=ComparisonStatus.STREAMING).count()
    if running >= running_limit:
        raise LimitExceeded(
            f"You already have {running} comparisons running (limit {running_limit}); "
            "wait for one to finish or cancel it."
        )
    recent = mine.filter(created_at__gte=timezone.now() - timedelta(minutes=1)).count()
    if recent >= rate_limit:
        raise LimitExceeded(
            f"You started {recent} comparisons in the last minute (limit {rate_limit}); "
            "try again shortly."
        )


@transaction.atomic
def comparison_create(
    *,
    user_id: str,
    prompt: str,
    system: str = "",
    slots: Sequence[SlotSpec],
    replay_of_id: str | None = None,
    enforce_limits: bool = True,
) -> Comparison:
    """Create a streaming comparison and one pending response per slot, in one transaction.

    With ``enforce_limits`` the per-user running and per-minute limits are checked under a
    per-user lock in the same transaction, so they hold across server instances sharing the
    database. Raises :class:`LimitExceeded`.
    """
    if enforce_limits:
        _lock_user(user_id)
        _check_limits(user_id)
    comparison = Comparison.objects.create(
        user_id=user_id,
        prompt=prompt,
        system=system,
        status=ComparisonStatus.STREAMING,
        replay_of_id=replay_of_id,
        heartbeat_at=timezone.now(),
    )
    keys = slot_keys([slot.model for slot in slots])
    ModelResponse.objects.bulk_create(
        ModelResponse(
            comparison=comparison,
            position=position,
            key=key,
            provider=slot.provider,
            model_name=slot.model,
            temperature=slot.temperature,
            max_tokens=slot.max_tokens,
        )
        for position, (key, slot) in enumerate(zip(keys, slots, strict=True))
    )
    return comparison


@transaction.atomic
def comparison_save_progress(
    *, comparison_id: str, progress: Sequence[ResponseProgress], status: str | None = None
) -> None:
    """Persist the given slots' progress and the heartbeat (and a final status), atomically."""
    if progress:
        rows = {
            row.key: row
            for row in ModelResponse.objects.filter(
                comparison_id=comparison_id, key__in=[p.key for p in progress]
            )
        }
        for item in progress:
            row = rows[item.key]
            for name in PROGRESS_FIELDS:
                setattr(row, name, getattr(item, name))
        ModelResponse.objects.bulk_update(list(rows.values()), PROGRESS_FIELDS)
    updates: dict[str, object] = {"heartbeat_at": timezone.now(), "updated_at": timezone.now()}
    if status is not None:
        updates["status"] = status
    Comparison.objects.filter(pk=comparison_id).update(**updates)


def comparison_overall_status(statuses: Sequence[str], *, cancelled: bool = False) -> str:
    """The comparison's final status from its slots' final statuses."""
    if cancelled:
        return ComparisonStatus.CANCELLED
    if any(s == ResponseStatus.INTERRUPTED for s in statuses):
        return ComparisonStatus.INTERRUPTED
    failed = sum(1 for s in statuses if s in (ResponseStatus.ERROR, ResponseStatus.CANCELLED))
    if failed == 0:
        return ComparisonStatus.COMPLETE
    if failed == len(statuses):
        return ComparisonStatus.ERROR
    return ComparisonStatus.PARTIAL


def comparison_heartbeat(*, comparison_ids: Sequence[str]) -> None:
    """Mark the given running comparisons as alive now."""
    Comparison.objects.filter(pk__in=list(comparison_ids)).update(heartbeat_at=timezone.now())


@transaction.atomic
def comparison_sweep_stale(*, stale_before: datetime) -> list[str]:
    """Mark comparisons whose process stopped beating ``interrupted``, keeping saved text."""
    stale = list(
        Comparison.objects.select_for_update()
        .filter(status=ComparisonStatus.STREAMING)
        .filter(Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))
        .values_list("id", flat=True)
    )
    if not stale:
        return []
    now = timezone.now()
    ModelResponse.objects.filter(comparison_id__in=stale).exclude(
        status__in=list(RESPONSE_FINISHED)
    ).update(
        status=ResponseStatus.INTERRUPTED,
        error="The server stopped while streaming.",
        finished_at=now,
    )
    Comparison.objects.filter(pk__in=stale).update(
        status=ComparisonStatus.INTERRUPTED, updated_at=now
    )
    return stale


class PlanError(ValueError):
    """A requested model slot cannot be run (unknown provider or model)."""


def comparison_plan(*, choices: Sequence[Any]) -> list[SlotSpec]:
    """Resolve requested ``{provider, model?, temperature?, maxTokens?}`` choices into slots.

    Unknown providers and models are refused here, before anything is created or called.
    A provider without a key is *not* refused: that model alone fails with "not configured".
    """
    from providers.registry import providers
    from providers.types import UnknownModel

    slots = []
    for choice in choices:
        if choice.provider not in providers:
            known = ", ".join(sorted(providers.aliases()))
            raise PlanError(f"Unknown provider '{choice.provider}'; available: {known}")
        provider = providers[choice.provider]
        model = choice.model or provider.default_model
        try:
            provider.model_info(model)
        except UnknownModel as exc:
            raise PlanError(exc.message) from None
        slots.append(
            SlotSpec(
                provider=choice.provider,
                model=model,
                temperature=choice.temperature,
                max_tokens=choice.maxTokens,
            )
        )
    return slots
