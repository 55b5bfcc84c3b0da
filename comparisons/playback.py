"""Recorded replay: re-emit a saved comparison's events at the pace they were recorded.

A replay is a new stream of that comparison's events: it opens with its own ``sessionSnapshot``
(status ``streaming``, every model ``pending`` with no content and ``nextIndex`` 0), which replaces
any earlier snapshot, then every chunk from index 0, then one ``comparisonComplete``. No provider
is called. Each response stores ``timeline`` = ``[[offset_ms, length], ...]``: the
chunk boundaries and their time offsets from the model's start, so the chunks and their pacing can
be rebuilt exactly from the saved content.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from comparisons import events
from comparisons.events import Frame
from comparisons.models import Comparison, ModelResponse

Publish = Callable[[Frame], Awaitable[None]]


@dataclass(eq=False)
class PlaybackSlot:
    key: str
    status: str = "pending"
    chunks: list[str] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    error: str = ""


@dataclass(eq=False)
class Playback:
    comparison_id: str
    slots: list[PlaybackSlot]
    done: asyncio.Event = field(default_factory=asyncio.Event)


def recorded_chunks(response: ModelResponse) -> list[tuple[float, str]]:
    """The response's chunks with their offsets (seconds), rebuilt from content + timeline."""
    out = []
    position = 0
    for offset_ms, length in response.timeline:
        length = int(length)
        out.append((float(offset_ms) / 1000.0, response.content[position : position + length]))
        position += length
    if position < len(response.content):  # text saved without a timeline (e.g. interrupted)
        last = out[-1][0] if out else 0.0
        out.append((last, response.content[position:]))
    return out


def replay_snapshot(
    comparison_id: str, responses: list[ModelResponse], *, hidden: bool = False
) -> dict[str, Any]:
    """The ``sessionSnapshot`` a recorded replay opens with: nothing played yet (``hidden``: a
    blind comparison before its reveal, its models withheld)."""
    return {
        "sessionId": comparison_id,
        "status": "streaming",
        "replay": True,
        "models": [
            {
                "key": r.key,
                "provider": None if hidden else r.provider,
                "modelName": None if hidden else r.model_name,
                "status": "pending",
                "content": "",
                "nextIndex": 0,
            }
            for r in responses
        ],
    }


async def _play_slot(
    playback: Playback,
    slot: PlaybackSlot,
    response: ModelResponse,
    speed: float,
    publish: Publish,
    hidden: bool,
) -> None:
    sid = playback.comparison_id
    key = slot.key
    slot.status = "streaming"
    await publish(events.model_status(session_id=sid, model=key, status="streaming"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, (offset, text) in enumerate(recorded_chunks(response)):
        delay = start + offset / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        slot.chunks.append(text)
        await publish(events.model_chunk(session_id=sid, model=key, chunk=text, index=index))
    metrics = response.metrics
    error = response.error
    if hidden:  # as the live run sent them
        metrics = events.metrics_hidden(metrics) if metrics is not None else None
        error = events.HIDDEN_ERROR if error else error
    slot.metrics = metrics
    slot.error = error
    if response.status == "complete":
        await publish(events.model_complete(session_id=sid, model=key, metrics=metrics))
    elif response.status == "error":
        await publish(events.model_error(session_id=sid, model=key, error=error))
    slot.status = response.status
    await publish(events.model_status(session_id=sid, model=key, status=response.status))


async def comparison_play_recorded(
    *, comparison: Comparison, speed: float, publish: Publish, playback: Playback | None = None
) -> None:
    """Emit the saved events of ``comparison`` through ``publish`` at ``speed`` times the
    recorded pace, after the replay's opening ``sessionSnapshot``."""
    responses = list(comparison.responses.all())
    playback = playback or Playback(comparison.id, [PlaybackSlot(r.key) for r in responses])
    hidden = comparison.identity_hidden
    snapshot = replay_snapshot(comparison.id, responses, hidden=hidden)
    await publish(events.session_snapshot(snapshot))
    await asyncio.gather(
        *(
            _play_slot(playback, slot, response, speed, publish, hidden)
            for slot, response in zip(playback.slots, responses, strict=True)
        )
    )
    await publish(events.comparison_complete(session_id=comparison.id, status=comparison.status))
    playback.done.set()
