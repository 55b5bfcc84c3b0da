"""Read-side queries for comparisons (HackSoft style: ``<entity>_<action>``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from comparisons.models import Comparison, ModelResponse, Turn


def _possible_id(comparison_id: str) -> bool:
    """Whether a row could have this id: PostgreSQL refuses NUL in a query instead of not finding
    it, so ids that cannot exist are answered without asking the database."""
    return 0 < len(comparison_id) <= Comparison.ID_MAX_LENGTH and "\x00" not in comparison_id


def _with_responses(queryset: QuerySet[Comparison]) -> QuerySet[Comparison]:
    return queryset.prefetch_related(
        Prefetch("responses", queryset=ModelResponse.objects.order_by("position")),
        # Follow-up turns' answers apart (none for most comparisons): turn 0's rows once.
        Prefetch(
            "responses",
            queryset=ModelResponse.all_turns.filter(turn__gt=0).order_by("turn", "position"),
            to_attr="later_responses",
        ),
        Prefetch("turns", queryset=Turn.objects.order_by("index")),
    )


def comparison_list(
    *, user_id: str, limit: int, before: tuple[datetime, str] | None = None
) -> list[Comparison]:
    """The owner's comparisons, newest first, after the ``(created_at, id)`` keyset cursor.

    Returns up to ``limit + 1`` rows so the caller can tell whether a next page exists.
    The filter and order are served by the ``(user_id, -created_at, -id)`` index.
    """
    queryset = Comparison.objects.filter(user_id=user_id)
    if before is not None:
        created_at, comparison_id = before
        queryset = queryset.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=comparison_id)
        )
    return list(_with_responses(queryset.order_by("-created_at", "-id"))[: limit + 1])


def comparison_get(*, user_id: str, comparison_id: str) -> Comparison | None:
    """One comparison if it exists and belongs to ``user_id``; otherwise None."""
    if not _possible_id(comparison_id):
        return None
    return _with_responses(Comparison.objects.filter(pk=comparison_id, user_id=user_id)).first()


def comparison_get_any(*, comparison_id: str) -> Comparison | None:
    """One comparison by id, whoever owns it (operator tools only)."""
    if not _possible_id(comparison_id):
        return None
    return _with_responses(Comparison.objects.filter(pk=comparison_id)).first()


@dataclass(frozen=True, slots=True)
class TurnView:
    """One turn of a comparison: its prompt and its answers (slot order). Turn 0 is the
    comparison's own prompt (``mode`` ``None``)."""

    index: int
    prompt: str
    mode: str | None
    source: str | None
    rows: list[ModelResponse]


def comparison_turns(*, comparison: Comparison) -> list[TurnView]:
    """Every turn of ``comparison``, in order (from the prefetch when it was loaded here)."""
    later = getattr(comparison, "later_responses", None)
    if later is None:
        later = list(
            ModelResponse.all_turns.filter(comparison=comparison, turn__gt=0).order_by(
                "turn", "position"
            )
        )
    by_turn: dict[int, list[ModelResponse]] = {}
    for row in later:
        by_turn.setdefault(row.turn, []).append(row)
    views = [TurnView(0, comparison.prompt, None, None, list(comparison.responses.all()))]
    for turn in sorted(comparison.turns.all(), key=lambda t: t.index):
        views.append(
            TurnView(
                turn.index,
                turn.prompt,
                turn.mode,
                turn.source_key or None,
                by_turn.get(turn.index, []),
            )
        )
    return views
