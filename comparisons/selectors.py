"""Read-side queries for comparisons (HackSoft style: ``<entity>_<action>``)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from comparisons.models import Comparison, ModelResponse


def _possible_id(comparison_id: str) -> bool:
    """Whether a row could have this id: PostgreSQL refuses NUL in a query instead of not finding
    it, so ids that cannot exist are answered without asking the database."""
    return 0 < len(comparison_id) <= Comparison.ID_MAX_LENGTH and "\x00" not in comparison_id


def _with_responses(queryset: QuerySet[Comparison]) -> QuerySet[Comparison]:
    return queryset.prefetch_related(
        Prefetch("responses", queryset=ModelResponse.objects.order_by("position"))
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
