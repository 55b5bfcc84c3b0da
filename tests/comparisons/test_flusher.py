"""The progress flusher keeps what it could not write, and writes it again; it spreads its
writes over the interval and never writes behind a run that has ended."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from comparisons import services
from comparisons.live.flusher import BATCH_SLOTS, ProgressFlusher, batches
from comparisons.live.run import ComparisonRun, SlotRun
from comparisons.models import ModelResponse
from providers.registry import providers
from providers.types import StreamRequest

SLOTS = [services.SlotSpec(provider="demo", model="demo-echo")]


def _run(comparison_id: str, user_id: str, text: str) -> ComparisonRun:
    slot = SlotRun(
        key="demo-echo",
        provider=providers["demo"],
        request=StreamRequest(model="demo-echo", prompt="Hi"),
        status="streaming",
        chunks=[text],
        dirty=True,
    )
    return ComparisonRun(comparison_id=comparison_id, user_id=user_id, slots=[slot])


@pytest.mark.django_db(transaction=True)
async def test_a_comparison_whose_progress_was_not_saved_stays_dirty_for_the_next_flush() -> None:
    create = database_sync_to_async(services.comparison_create)
    good = await create(user_id="user_a", prompt="Hi", slots=SLOTS)
    bad = await create(user_id="user_b", prompt="Ho", slots=SLOTS)
    good_run = _run(good.pk, "user_a", "alice so far")
    bad_run = _run(bad.pk, "user_b", "bob \ud800")  # no database can store a lone surrogate
    flusher = ProgressFlusher(lambda: [good_run, bad_run])

    await flusher.flush()

    assert not good_run.slots[0].dirty
    assert bad_run.slots[0].dirty  # its text was not written: the next flush tries again
    # Once the text can be stored, the next flush writes it.
    bad_run.slots[0].chunks[:] = ["bob so far"]
    await flusher.flush()
    assert not bad_run.slots[0].dirty
    contents = await database_sync_to_async(
        lambda: dict(ModelResponse.objects.values_list("comparison_id", "content"))
    )()
    assert contents == {good.pk: "alice so far", bad.pk: "bob so far"}


def test_batches_hold_at_most_the_batch_size_and_keep_the_order() -> None:
    runs = [_run(f"c{i}", "u", "x") for i in range(2 * BATCH_SLOTS + 5)]
    groups = batches(runs)
    assert [len(g) for g in groups] == [BATCH_SLOTS, BATCH_SLOTS, 5]
    assert [r for g in groups for r in g] == runs
    big = ComparisonRun(comparison_id="big", user_id="u", slots=runs[0].slots * (BATCH_SLOTS + 1))
    assert [len(g) for g in batches([runs[0], big, runs[1]])] == [1, 1, 1]
    assert batches([]) == []


@pytest.mark.django_db(transaction=True)
async def test_every_runs_progress_is_written_each_interval_and_never_after_it_ended(
    settings,
) -> None:
    settings.PLAYGROUND_FLUSH_INTERVAL = 0.3
    create = database_sync_to_async(services.comparison_create)
    saved = [
        await create(user_id=f"user_{i}", prompt="Hi", slots=SLOTS, enforce_limits=False)
        for i in range(BATCH_SLOTS + 3)  # two batches
    ]
    runs = [_run(c.pk, f"user_{i}", f"text {i}") for i, c in enumerate(saved)]
    live = list(runs)
    ended = runs[-1]  # in the second batch: it ends before that batch is written
    flusher = ProgressFlusher(lambda: live)
    flusher.wake()
    try:
        await asyncio.sleep(0.05)
        live.remove(ended)
        await asyncio.sleep(0.45)
        written = await database_sync_to_async(
            lambda: dict(ModelResponse.objects.values_list("comparison_id", "content"))
        )()
    finally:
        flusher.stop()
    assert all(written[run.comparison_id] == f"text {i}" for i, run in enumerate(runs[:-1]))
    assert written[ended.comparison_id] == ""  # its own final save owns its row now
    assert ended.slots[0].dirty
