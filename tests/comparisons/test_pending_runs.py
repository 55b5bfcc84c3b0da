"""A run started before its admission: its models build their requests at once but send nothing
upstream, and nothing of it is published, until it is admitted; refused, it leaves no trace."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from channels.db import database_sync_to_async

from comparisons import services
from comparisons.events import Frame
from comparisons.live.run import ComparisonRun, RunState, SlotRun
from comparisons.live.subscribers import Subscriber
from comparisons.models import Comparison
from providers.backends.demo import DemoProvider
from providers.types import StreamRequest


class Recorder(Subscriber):
    """A subscriber that keeps every frame it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    async def send(self, frame: Frame) -> None:
        self.frames.append(frame)


def _pending_run(comparison_id: str) -> ComparisonRun:
    demo = DemoProvider("demo", {"first_token_delay": 0, "tokens_per_second": 0})
    slots = [
        SlotRun(key=key, provider=demo, request=StreamRequest(model="demo-echo", prompt="Hi"))
        for key in ("a", "b")
    ]
    return ComparisonRun(
        comparison_id=comparison_id, user_id="user_p", slots=slots, held=True, pending=True
    )


def _events(frames: list[Frame]) -> list[str]:
    return [str(frame.event) for frame in frames]


async def test_a_refused_run_sends_publishes_and_saves_nothing() -> None:
    run = _pending_run("refused")
    watcher = Recorder()
    run.fanout.add(watcher)
    task = run.start()
    await asyncio.sleep(0.05)  # ample for the demo's first piece, were it not held
    assert run.state is RunState.PENDING
    assert all(slot.chunks == [] for slot in run.slots)
    assert watcher.frames == []
    run.refuse()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert run.state is RunState.REFUSED
    assert all(slot.chunks == [] for slot in run.slots)
    assert watcher.frames == []  # not even its modelStatus streaming


@pytest.mark.django_db(transaction=True)
async def test_an_admitted_run_announces_its_models_before_their_first_chunk() -> None:
    saved = await database_sync_to_async(services.comparison_create)(
        user_id="user_p",
        prompt="Hi",
        slots=[services.SlotSpec(provider="demo", model="demo-echo")] * 2,
    )
    run = _pending_run(saved.pk)
    task = run.start()
    await asyncio.sleep(0.05)
    assert all(slot.chunks == [] for slot in run.slots)
    await run.admit()
    assert run.state is RunState.STREAMING
    watcher = Recorder()
    await run.release(watcher)
    await asyncio.wait_for(task, 10)
    events = _events(watcher.frames)
    assert events[:2] == ["modelStatus", "modelStatus"]  # both "streaming", then the chunks
    assert events.count("modelChunk") == sum(len(slot.chunks) for slot in run.slots) > 0
    assert events[-1] == "comparisonComplete"
    status = await database_sync_to_async(
        lambda: Comparison.objects.values_list("status", flat=True).get(pk=saved.pk)
    )()
    assert status == "complete"
