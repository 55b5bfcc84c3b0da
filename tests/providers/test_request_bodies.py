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
