"""What each backend puts on the wire."""

from __future__ import annotations

from providers.registry import providers
from providers.types import StreamRequest
from tests.fake_upstream import FakeUpstream

from .helpers import collect


async def test_anthropic_request_body(upstream_providers: FakeUpstream) -> None:
    marker = upstream_providers.script("body", deltas=["ok"])
    request = StreamRequest(
        model="claude-haiku-4-5-20251001",
        prompt=f"What is 2+2? {marker}",
        system="Answer in one word.",
        temperature=0.3,
        max_tokens=77,
    )
    out = await collect(providers["anthropic"], request)
    assert out.text == "ok"
    [recorded] = upstream_providers.requests_for("body")
    assert recorded.path == "/v1/messages"
    body = recorded.body
    assert body["model"] == "claude-haiku-4-5-20251001"
    assert body["messages"] == [{"role": "user", "content": request.prompt}]
    assert body["system"] == "Answer in one word."
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 77
    assert body["stream"] is True


async def test_anthropic_defaults_max_tokens(upstream_providers: FakeUpstream) -> None:
    marker = upstream_providers.script("defaults", deltas=["ok"])
    await collect(providers["anthropic"], StreamRequest("claude-haiku-4-5-20251001", marker))
    [recorded] = upstream_providers.requests_for("defaults")
    assert recorded.body["max_tokens"] == 4096
    assert "system" not in recorded.body and "temperature" not in recorded.body


async def test_gemini_request_body(upstream_providers: FakeUpstream) -> None:
    marker = upstream_providers.script("body", deltas=["ok"])
    request = StreamRequest(
        model="gemini-2.5-pro",
        prompt=f"What is 2+2? {marker}",
        system="Answer in one word.",
        temperature=0.3,
        max_tokens=77,
    )
    out = await collect(providers["google"], request)
    assert out.text == "ok"
    [recorded] = upstream_providers.requests_for("body")
    # The API version (v1beta unless OPTIONS say otherwise) comes first; the model path follows.
    assert recorded.path.startswith("/v1")
    assert recorded.path.endswith("/models/gemini-2.5-pro:streamGenerateContent")
    assert recorded.query == {"alt": "sse"}
    body = recorded.body
    assert body["contents"] == [{"role": "user", "parts": [{"text": request.prompt}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "Answer in one word."}]
    assert body["generationConfig"]["temperature"] == 0.3
    assert body["generationConfig"]["maxOutputTokens"] == 77


async def test_openai_request_body(upstream_providers: FakeUpstream) -> None:
    marker = upstream_providers.script("body", deltas=["ok"])
    request = StreamRequest(
        model="gpt-4.1-mini",
        prompt=f"What is 2+2? {marker}",
        system="Answer in one word.",
        temperature=0.3,
        max_tokens=77,
    )
    out = await collect(providers["openai"], request)
    assert out.text == "ok"
    [recorded] = upstream_providers.requests_for("body")
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "***"
    body = recorded.body
    assert body["model"] == "gpt-4.1-mini"
    assert body["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": request.prompt},
    ]
    assert body["temperature"] == 0.3
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openai_compatible_alias_body(upstream_providers: FakeUpstream) -> None:
    """An alias configured with ``max_tokens_field: max_tokens`` (older servers) at its own URL;
    nothing optional is sent when nothing optional was asked."""
    marker = upstream_providers.script("compat", deltas=["ok"])
    await collect(providers["local"], StreamRequest("llama3.2", marker, max_tokens=5))
    await collect(providers["local"], StreamRequest("llama3.2", f"{marker} again"))
    first, second = upstream_providers.requests_for("compat")
    assert first.path == "/local/v1/chat/completions" and first.vendor == "local"
    assert first.body["max_tokens"] == 5 and "max_completion_tokens" not in first.body
    assert second.body["messages"] == [{"role": "user", "content": f"{marker} again"}]
    assert not {"temperature", "max_tokens", "max_completion_tokens"} & set(second.body)
