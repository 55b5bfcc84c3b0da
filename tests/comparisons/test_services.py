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


def test_progress_save_writes_every_slot_of_every_comparison_in_one_call() -> None:
    """The flusher's batch: values of every type (and NULLs) land on the right rows, heartbeats
    move, and slots left out of the batch are untouched."""
    first = services.comparison_create(user_id="user_p", prompt="Hi", slots=SLOTS)
    second = services.comparison_create(user_id="user_p", prompt="Ho", slots=SLOTS[:2])
    started = timezone.now() - timedelta(seconds=3)
    done = services.ResponseProgress(
        key="demo-echo",
        status="complete",
        content='It\'s "quoted", ünïcode\nand 100% done',
        chunk_count=3,
        timeline=[[0.0, 1.0], [12.5, 2.0]],
        finish_reason="stop",
        duration_ms=1234.5,
        time_to_first_token_ms=12.25,
        input_tokens=7,
        output_tokens=3,
        total_tokens=10,
        tokens_per_second=2.5,
        estimated_cost=0.00012345,
        started_at=started,
        finished_at=started + timedelta(seconds=1),
    )
    streaming = services.ResponseProgress(
        key="demo-echo#2", status="streaming", content="par", chunk_count=1, started_at=started
    )
    failed = services.ResponseProgress(
        key="demo-echo", status="error", content="", chunk_count=0, error="Provider said no"
    )
    before = Comparison.objects.get(pk=second.pk).heartbeat_at
    services.comparison_progress_save(
        progress=[(first.pk, done), (first.pk, streaming), (second.pk, failed)],
        alive=[first.pk, second.pk],
    )
    rows = {(r.comparison_id, r.key): r for r in ModelResponse.objects.all()}
    saved = rows[(first.pk, "demo-echo")]
    assert (saved.status, saved.content, saved.chunk_count, saved.timeline) == (
        "complete",
        done.content,
        3,
        [[0.0, 1.0], [12.5, 2.0]],
    )
    assert (saved.duration_ms, saved.time_to_first_token_ms, saved.tokens_per_second) == (
        1234.5,
        12.25,
        2.5,
    )
    assert (saved.input_tokens, saved.output_tokens, saved.total_tokens) == (7, 3, 10)
    assert saved.estimated_cost == pytest.approx(0.00012345)
    assert (saved.started_at, saved.finished_at) == (done.started_at, done.finished_at)
    partial = rows[(first.pk, "demo-echo#2")]
    assert (partial.status, partial.content, partial.duration_ms, partial.finished_at) == (
        "streaming",
        "par",
        None,
        None,
    )
    assert rows[(second.pk, "demo-echo")].error == "Provider said no"
    assert rows[(second.pk, "demo-echo#2")].status == "pending"  # not in the batch
    assert rows[(first.pk, "claude-sonnet-4-5-20250929")].status == "pending"
    after = Comparison.objects.get(pk=second.pk).heartbeat_at
    assert after is not None and (before is None or after > before)


UNSAVEABLE = [
    pytest.param("secret answer\x00", None, marks=pytest.mark.postgres, id="nul"),
    pytest.param("secret answer\ud800", None, id="lone-surrogate"),
    pytest.param("secret answer", 10**20, id="huge-token-count"),
]


@pytest.mark.django_db(transaction=True)  # each comparison in a real transaction of its own
@pytest.mark.parametrize(("content", "input_tokens"), UNSAVEABLE)
def test_one_unsaveable_comparison_does_not_block_the_others_in_the_batch(
    content: str, input_tokens: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    good = services.comparison_create(user_id="user_a", prompt="Hi", slots=SLOTS[:2])
    poisoned = services.comparison_create(user_id="user_b", prompt="Ho", slots=SLOTS[:2])
    idle = services.comparison_create(user_id="user_c", prompt="Hm", slots=SLOTS[:1])
    Comparison.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    stale = timezone.now() - timedelta(minutes=1)

    def slot(key: str, content: str, input_tokens: int | None = None) -> services.ResponseProgress:
        return services.ResponseProgress(
            key=key, status="streaming", content=content, chunk_count=1, input_tokens=input_tokens
        )

    failed = services.comparison_progress_save(
        progress=[
            (good.pk, slot("demo-echo", "alice so far")),
            (poisoned.pk, slot("demo-echo#2", "fine but same comparison")),
            (poisoned.pk, slot("demo-echo", content, input_tokens)),
            (good.pk, slot("demo-echo#2", "and more")),
        ],
        alive=[good.pk, poisoned.pk, idle.pk],
    )

    assert failed == [poisoned.pk]
    contents = {(r.comparison_id, r.key): r.content for r in ModelResponse.objects.all()}
    assert contents == {
        (good.pk, "demo-echo"): "alice so far",
        (good.pk, "demo-echo#2"): "and more",
        # All or nothing per comparison: none of the failed comparison's batch was applied.
        (poisoned.pk, "demo-echo"): "",
        (poisoned.pk, "demo-echo#2"): "",
        (idle.pk, "demo-echo"): "",
    }
    # Every run is alive, the failed one's too: no sweep may mark any of them interrupted.
    beats = dict(Comparison.objects.values_list("id", "heartbeat_at"))
    assert all(beat is not None and beat > stale for beat in beats.values()), beats
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith(f"Could not save the progress of comparison {poisoned.pk} (")
    logged = caplog.text
    assert poisoned.pk in logged and "secret answer" not in logged


@pytest.mark.django_db(transaction=True)
def test_a_final_save_that_cannot_be_stored_says_so_and_keeps_the_heartbeat() -> None:
    comparison = services.comparison_create(user_id="user_a", prompt="Hi", slots=SLOTS[:1])
    Comparison.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    done = services.ResponseProgress(
        key="demo-echo", status="complete", content="\ud800", chunk_count=1
    )
    with pytest.raises(services.ProgressNotSaved, match=comparison.pk):
        services.comparison_save_progress(
            comparison_id=comparison.pk, progress=[done], status="complete"
        )
    saved = Comparison.objects.get(pk=comparison.pk)
    assert saved.status == "streaming"  # not "complete" with an answer that was not saved
    assert saved.heartbeat_at is not None
    assert saved.heartbeat_at > timezone.now() - timedelta(minutes=1)


def test_a_final_save_after_a_sweep_wins_the_process_was_alive() -> None:
    """A database outage long enough for a sweep to mark a live run interrupted: the run's
    final save, once the database is back, sets every slot and the final status."""
    comparison = services.comparison_create(user_id="user_a", prompt="Hi", slots=SLOTS[:1])
    Comparison.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert services.comparison_sweep_stale(stale_before=timezone.now()) == [comparison.pk]
    done = services.ResponseProgress(
        key="demo-echo", status="complete", content="all of it", chunk_count=2
    )
    services.comparison_save_progress(
        comparison_id=comparison.pk, progress=[done], status="complete"
    )
    saved = selectors.comparison_get(user_id="user_a", comparison_id=comparison.pk)
    assert saved is not None and saved.status == "complete"
    [row] = saved.responses.all()
    assert (row.status, row.content, row.error) == ("complete", "all of it", "")
