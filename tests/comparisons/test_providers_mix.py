"""One comparison across every kind of provider over /ws: Anthropic, Gemini, OpenAI and two
OpenAI-compatible servers at their own base URLs, through the real SDKs and the fake upstream."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from comparisons.models import Comparison
from tests.comparisons.test_rest import get
from tests.comparisons.test_socket import assert_model_sequence, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-haiku-4-5-20251001"
GEMINI = "gemini-2.5-flash"
GPT = "gpt-4.1-mini"
LOCAL = "qwen3:8b"  # in no list and no price book: a brand-new name works as it is
HOSTED = "meta-llama/llama-3.3-70b-instruct"


async def test_five_providers_stream_side_by_side(upstream_providers, connect, token_for) -> None:
    upstream = upstream_providers
    words = {alias: [f"{alias}-{i} " for i in range(6)] for alias in ("anthropic", "google")}
    words |= {alias: [f"{alias}-{i} " for i in range(6)] for alias in ("openai", "local", "hosted")}
    for alias, deltas in words.items():
        upstream.script(f"mix.{alias}", deltas=deltas, delay=0.02, input_tokens=100)
    upstream.script(
        "mix.openai",
        deltas=words["openai"],
        delay=0.02,
        input_tokens=1000,
        cached_tokens=400,
        output_tokens=200,
        reasoning_tokens=50,
        served_model="gpt-4.1-mini-2025-04-14",
    )
    client = await connect("user_alice")
    await client.send(
        "startComparison",
        {
            "prompt": "Compare scenario:mix",
            "models": [
                {"provider": "anthropic", "model": CLAUDE},
                {"provider": "google", "model": GEMINI},
                {"provider": "openai", "model": GPT},
                {"provider": "local", "model": LOCAL},
                {"provider": "hosted"},
            ],
        },
    )
    events = await client.until_event("comparisonComplete", timeout=30)
    sid = events[0]["data"]["sessionId"]
    keys = {CLAUDE: "anthropic", GEMINI: "google", GPT: "openai", LOCAL: "local", HOSTED: "hosted"}
    assert [m["provider"] for m in events[0]["data"]["models"]] == list(keys.values())
    for key, alias in keys.items():
        assert_model_sequence(events, key, "complete")
        assert text_of(events, key) == "".join(words[alias])
    assert events[-1]["data"]["status"] == "complete"
    # Side by side: while the first model to finish was streaming, the others streamed too.
    chunks = [e["data"]["model"] for e in events if e["event"] == "modelChunk"]
    first_done = min(keys, key=lambda k: max(i for i, m in enumerate(chunks) if m == k))
    last_of_first = max(i for i, m in enumerate(chunks) if m == first_done)
    assert len(set(chunks[:last_of_first])) >= 3

    # Each OpenAI-compatible alias was called at its own base URL.
    paths = {r.vendor: r.path for r in upstream.requests}
    assert paths["local"] == "/local/v1/chat/completions"
    assert paths["hosted"] == "/hosted/v1/chat/completions"
    assert paths["openai"] == "/v1/chat/completions"

    metrics = {
        e["data"]["model"]: e["data"]["metrics"] for e in events if e["event"] == "modelComplete"
    }
    gpt = metrics[GPT]
    assert (gpt["inputTokens"], gpt["cachedInputTokens"]) == (1000, 400)
    assert (gpt["outputTokens"], gpt["reasoningTokens"]) == (250, 50)
    # gpt-4.1-mini: $0.40 input, $0.10 cached input, $1.60 output per million.
    assert gpt["estimatedCost"] == pytest.approx((600 * 0.4 + 400 * 0.1 + 250 * 1.6) / 1e6)
    assert gpt["priceVersion"] == "2026-11-25"
    assert gpt["responseModel"] == "gpt-4.1-mini-2025-04-14"
    assert metrics[CLAUDE]["estimatedCost"] > 0 and metrics[CLAUDE]["responseModel"] is None
    for key in (LOCAL, HOSTED):  # no price known: unknown, not 0
        assert metrics[key]["estimatedCost"] is None
        assert metrics[key]["priceVersion"] == "2026-11-25"
        assert metrics[key]["inputTokens"] == 100

    def rows() -> dict[str, object]:
        comparison = Comparison.objects.prefetch_related("responses").get(pk=sid)
        return {r.key: r for r in comparison.responses.all()}

    saved = await sync_to_async(rows)()
    row = saved[GPT]
    assert row.response_model == "gpt-4.1-mini-2025-04-14"  # type: ignore[attr-defined]
    assert (row.cached_input_tokens, row.reasoning_tokens) == (400, 50)  # type: ignore[attr-defined]
    assert saved[LOCAL].estimated_cost is None  # type: ignore[attr-defined]

    status, _, body = await get(f"/sessions/{sid}", token_for("user_alice"))
    assert status == 200
    assert body["responses"][LOCAL]["metrics"]["estimatedCost"] is None
    assert body["responses"][GPT]["metrics"] == metrics[GPT] | {
        "durationInMilliseconds": body["responses"][GPT]["metrics"]["durationInMilliseconds"],
        "timeToFirstTokenInMilliseconds": body["responses"][GPT]["metrics"][
            "timeToFirstTokenInMilliseconds"
        ],
    }
