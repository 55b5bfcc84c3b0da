"""The offline demo provider."""

from __future__ import annotations

import asyncio
import contextlib
import time

from providers.backends.demo import demo_answer, split_pieces
from providers.registry import providers
from providers.types import StreamRequest, TextDelta

from .helpers import collect


def _demo(settings: object, **options: float) -> None:
    settings.AI_PROVIDERS = {  # type: ignore[attr-defined]
        "demo": {"BACKEND": "providers.backends.demo.DemoProvider", "OPTIONS": options}
    }


async def test_deterministic_labelled_answer(settings: object) -> None:
    _demo(settings, tokens_per_second=5000, first_token_delay=0)
    provider = providers["demo"]
    assert provider.display_name == "Demo" and provider.is_configured
    request = StreamRequest(model="demo-echo", prompt="Why is the sky blue?")
    first = await collect(provider, request)
    second = await collect(provider, request)
    assert first.deltas == second.deltas
    assert first.text == demo_answer(request)
    assert "offline demo of AI Playground" in first.text
    assert "Why is the sky blue?" in first.text
    assert "demo-echo" not in first.text  # a blind battle of demo models must not tell which
    assert first.end is not None
    assert first.end.finish_reason == "stop"
    assert first.end.usage.output_tokens == len(first.deltas) == len(split_pieces(first.text))
    assert first.end.usage.input_tokens == 5  # ceil(20 chars / 4)
    assert provider.estimate_cost(first.end.usage, "demo-echo") == 0.0


async def test_pacing_is_configurable(settings: object) -> None:
    request = StreamRequest(model="demo-echo", prompt="hi")
    pieces = len(split_pieces(demo_answer(request)))
    _demo(settings, tokens_per_second=pieces * 10, first_token_delay=0.1)
    started = time.monotonic()
    out = await collect(providers["demo"], request)
    elapsed = time.monotonic() - started
    assert out.end is not None
    # 0.1 s before the first piece, then ~0.1 s for the rest (10x the piece count per second);
    # the upper bound only says "not stuck" (a busy machine may be slow).
    assert 0.18 <= elapsed < 5


async def test_cancel_stops_the_stream(settings: object) -> None:
    _demo(settings, tokens_per_second=100, first_token_delay=0)
    request = StreamRequest(model="demo-echo", prompt="hi")
    total = len(split_pieces(demo_answer(request)))
    got: list[str] = []
    first = asyncio.Event()
    stream = providers["demo"].stream(request)

    async def consume() -> None:
        async for event in stream:
            if isinstance(event, TextDelta):
                got.append(event.text)
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert 0 < len(got) < total
    # The generator itself is finished: nothing can come out of it any more.
    assert stream.ag_frame is None  # type: ignore[attr-defined]
