"""Comparison services and selectors against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from comparisons import selectors, services
from comparisons.maintenance import sweep_stale_comparisons
from comparisons.models import Comparison, ModelResponse

pytestmark = pytest.mark.django_db

SLOTS = [
    services.SlotSpec(provider="demo", model="demo-echo"),
    services.SlotSpec(provider="demo", model="demo-echo", temperature=0.5),
    services.SlotSpec(provider="anthropic", model="claude-sonnet-4-5-20250929", max_tokens=64),
]


def test_slot_keys_suffix_repeats() -> None:
    assert services.slot_keys(["a", "b", "a", "a"]) == ["a", "b", "a#2", "a#3"]


def test_create_saves_ordered_slots_with_params() -> None:
    comparison = services.comparison_create(user_id="user_a", prompt="Hi", slots=SLOTS)
    rows = list(comparison.responses.order_by("position"))
    assert [(r.key, r.provider, r.temperature, r.max_tokens, r.status) for r in rows] == [
        ("demo-echo", "demo", None, None, "pending"),
        ("demo-echo#2", "demo", 0.5, None, "pending"),
        ("claude-sonnet-4-5-20250929", "anthropic", None, 64, "pending"),
    ]
    assert comparison.status == "streaming"
    assert len(comparison.id) == 24


@pytest.mark.parametrize(
    ("statuses", "cancelled", "expected"),
    [
        (["complete", "complete"], False, "complete"),
        (["complete", "error"], False, "partial"),
        (["error", "error"], False, "error"),
        (["complete", "cancelled"], True, "cancelled"),
        (["complete", "cancelled"], False, "partial"),
    ],
)
def test_overall_status(statuses: list[str], cancelled: bool, expected: str) -> None:
    assert services.comparison_overall_status(statuses, cancelled=cancelled) == expected


def test_running_limit(settings) -> None:
    settings.PLAYGROUND_MAX_RUNNING_PER_USER = 2
    for _ in range(2):
        services.comparison_create(user_id="user_busy", prompt="x", slots=SLOTS[:1])
    with pytest.raises(services.LimitExceeded, match="2 comparisons running"):
        services.comparison_create(user_id="user_busy", prompt="x", slots=SLOTS[:1])
    # Another user is not affected; a finished comparison frees a place.
    services.comparison_create(user_id="user_other", prompt="x", slots=SLOTS[:1])
    Comparison.objects.filter(user_id="user_busy").update(status="complete")
    services.comparison_create(user_id="user_busy", prompt="x", slots=SLOTS[:1])


def test_rate_limit(settings) -> None:
    settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 3
    for _ in range(3):
        c = services.comparison_create(user_id="user_fast", prompt="x", slots=SLOTS[:1])
        Comparison.objects.filter(pk=c.pk).update(status="complete")
    with pytest.raises(services.LimitExceeded, match="in the last minute"):
        services.comparison_create(user_id="user_fast", prompt="x", slots=SLOTS[:1])
    Comparison.objects.filter(user_id="user_fast").update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    services.comparison_create(user_id="user_fast", prompt="x", slots=SLOTS[:1])


def test_sweep_marks_stale_comparisons_interrupted_and_keeps_text(settings) -> None:
    settings.PLAYGROUND_HEARTBEAT_STALE_SECONDS = 10
    stale = services.comparison_create(user_id="u", prompt="x", slots=SLOTS[:2])
    fresh = services.comparison_create(user_id="u", prompt="x", slots=SLOTS[:1])
    services.comparison_save_progress(
        comparison_id=stale.id,
        progress=[
            services.ResponseProgress(
                key="demo-echo", status="streaming", content="Half an ans", chunk_count=3
            ),
            services.ResponseProgress(
                key="demo-echo#2", status="complete", content="Done.", chunk_count=1
            ),
        ],
    )
    Comparison.objects.filter(pk=stale.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=60)
    )
    assert sweep_stale_comparisons() == [stale.id]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "interrupted"
    assert fresh.status == "streaming"
    first, second = stale.responses.order_by("position")
    assert (first.status, first.content) == ("interrupted", "Half an ans")
    assert (second.status, second.content) == ("complete", "Done.")
    assert sweep_stale_comparisons() == []


def test_list_is_newest_first_and_paginates_by_keyset() -> None:
    made = [
        services.comparison_create(
            user_id="user_p", prompt=f"p{i}", slots=SLOTS[:1], enforce_limits=False
        )
        for i in range(5)
    ]
    services.comparison_create(user_id="someone_else", prompt="x", slots=SLOTS[:1])
    page = selectors.comparison_list(user_id="user_p", limit=2)
    assert [c.prompt for c in page] == ["p4", "p3", "p2"]  # limit + 1 tells a next page exists
    last = page[1]
    page2 = selectors.comparison_list(user_id="user_p", limit=2, before=(last.created_at, last.id))
    assert [c.prompt for c in page2] == ["p2", "p1", "p0"]
    assert {c.id for c in made} == {c.id for c in page[:2] + page2}
    assert selectors.comparison_get(user_id="someone_else", comparison_id=made[0].id) is None


@pytest.mark.postgres
def test_list_query_uses_the_owner_index() -> None:
    for i in range(3):
        services.comparison_create(
            user_id="user_idx", prompt=f"p{i}", slots=SLOTS[:1], enforce_limits=False
        )
    queryset = Comparison.objects.filter(user_id="user_idx").order_by("-created_at", "-id")[:51]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        plan = queryset.explain()
        cursor.execute("SET enable_seqscan = on")
    assert "comparison_user_created" in plan


def test_response_rows_are_unique_per_slot() -> None:
    comparison = services.comparison_create(user_id="u", prompt="x", slots=SLOTS[:1])
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelResponse.objects.create(
            comparison=comparison,
            position=1,
            key="demo-echo",
            provider="demo",
            model_name="demo-echo",
        )
