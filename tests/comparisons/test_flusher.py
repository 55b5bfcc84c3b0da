"""The progress flusher keeps what it could not write, and writes it again."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from comparisons import services
from comparisons.live.flusher import ProgressFlusher
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
