"""OpenAI-specific stream details, through the real ``openai`` SDK against the fake upstream."""

from __future__ import annotations

from typing import Any

from providers.registry import providers
from providers.types import RateLimited, StreamRequest
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.fixtures import upstream_provider_settings

from .helpers import collect


async def test_server_without_usage_chunk_still_completes(
    upstream_providers: FakeUpstream,
) -> None:
    """Servers that ignore ``stream_options`` send no usage: the answer completes with zero
    counts (no made-up numbers)."""
    marker = upstream_providers.script("nousage", deltas=["a", "b"], usage_chunk=False)
    out = await collect(providers["local"], StreamRequest("llama3.2", marker))
    assert out.error is None and out.text == "ab"
    assert out.end is not None and out.end.usage.total_tokens == 0
    assert out.end.finish_reason == "stop"


async def test_stream_usage_can_be_switched_off(settings: Any, fake_upstream: FakeUpstream) -> None:
    settings.AI_PROVIDERS = upstream_provider_settings(
        fake_upstream.url, local={"stream_usage": False}
    )
    marker = fake_upstream.script("off", deltas=["a"])
    out = await collect(providers["local"], StreamRequest("llama3.2", marker))
    assert out.error is None
    [recorded] = fake_upstream.requests_for("off")
    assert "stream_options" not in recorded.body


async def test_length_finish_reason(upstream_providers: FakeUpstream) -> None:
    marker = upstream_providers.script("len", deltas=["a"], finish_reason="length")
    out = await collect(providers["openai"], StreamRequest("gpt-4.1-mini", marker))
    assert out.end is not None and out.end.finish_reason == "length"


async def test_quota_exhausted_is_named(upstream_providers: FakeUpstream) -> None:
    """OpenAI answers an exhausted quota with 429 too; waiting does not help, so say so."""
    marker = upstream_providers.script(
        "quota",
        status=429,
        error_code="insufficient_quota",
        error_message="You exceeded your current quota.",
    )
    out = await collect(providers["openai"], StreamRequest("gpt-4.1-mini", marker))
    assert isinstance(out.error, RateLimited)
    assert str(out.error) == "OpenAI quota exhausted (429): You exceeded your current quota."
