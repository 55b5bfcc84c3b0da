"""Model output is untrusted: a NUL character, a lone surrogate or a non-text answer part from an upstream, in each
vendor's wire format through the real SDKs, never breaks saving, for its owner or anyone else."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from comparisons.models import Comparison, ModelResponse
from tests.comparisons.test_socket import assert_model_sequence, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-haiku-4-5-20251001"
GEMINI = "gemini-2.5-flash"
GPT = "gpt-4.1-mini"
VENDORS = {"anthropic": CLAUDE, "google": GEMINI, "openai": GPT}
REPLACEMENT = "\ufffd"


async def saved(sid: str) -> dict[str, dict[str, Any]]:
    """The comparison's saved model rows, by slot key."""

    @sync_to_async
    def read() -> dict[str, dict[str, Any]]:
        rows = ModelResponse.objects.filter(comparison_id=sid).values("key", "status", "content")
        return {row["key"]: dict(row) for row in rows}

    return await read()


async def saved_status(sid: str) -> str:
    return await sync_to_async(lambda: Comparison.objects.get(pk=sid).status)()


async def until_saved(sid: str, contents: dict[str, str], within: float = 20.0) -> None:
    """Wait until the periodic flush has saved ``contents`` (by slot key) for ``sid``."""
    async with asyncio.timeout(within):
        # The database has no event to wait on; polled, bounded by ``within``.
        while {k: v["content"] for k, v in (await saved(sid)).items()} != contents:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_nul_in_answers_is_saved_and_another_users_live_comparison_is_unaffected(
    upstream_providers, connect, settings
) -> None:
    upstream = upstream_providers
    settings.PLAYGROUND_FLUSH_INTERVAL = 0.05
    settings.PROVIDER_IDLE_TIMEOUT = 60.0  # both stay live, stalled, until cancelled
    for alias in VENDORS:
        # A NUL, and a lone surrogate (JSON "\ud800"): neither can be stored as text.
        upstream.script(
            f"nul.{alias}", deltas=["Hello ", "a\x00b", "\x00", "\ud800!"], stall_after=4
        )
    upstream.script("other", deltas=["bob-0 ", "bob-1 ", "bob-2 "], stall_after=3)
    alice = await connect("user_alice")
    bob = await connect("user_bob")
    await alice.send(
        "startComparison",
        {
            "prompt": "scenario:nul",
            "models": [{"provider": p, "model": m} for p, m in VENDORS.items()],
        },
    )
    await bob.send("startComparison", {"prompt": "scenario:other", "providers": ["openai"]})
    alice_sid = (await alice.until_event("sessionCreated"))[-1]["data"]["sessionId"]
    bob_sid = (await bob.until_event("sessionCreated"))[-1]["data"]["sessionId"]
    answer = f"Hello a{REPLACEMENT}b{REPLACEMENT}{REPLACEMENT}!"

    # While both are live, the flusher saves both: the NUL answer with the replacement
    # character, and the other user's answer so far.
    await until_saved(alice_sid, dict.fromkeys(VENDORS.values(), answer))
    await until_saved(bob_sid, {GPT: "bob-0 bob-1 bob-2 "})

    await alice.send("cancelComparison", {"sessionId": alice_sid})
    await bob.send("cancelComparison", {"sessionId": bob_sid})
    alice_events = await alice.until_event("comparisonComplete")
    await bob.until_event("comparisonComplete")
    for key in VENDORS.values():
        assert text_of(alice.events, key) == answer  # what was shown is what was saved
        assert_model_sequence(alice_events, key, "cancelled")
    rows = await saved(alice_sid)
    assert {k: (v["status"], v["content"]) for k, v in rows.items()} == dict.fromkeys(
        VENDORS.values(), ("cancelled", answer)
    )
    assert await saved_status(alice_sid) == "cancelled"
    assert (await saved(bob_sid))[GPT]["content"] == "bob-0 bob-1 bob-2 "
    assert await saved_status(bob_sid) == "cancelled"


async def test_a_non_text_answer_part_ends_that_model_with_model_error(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script("odd.anthropic", deltas=["Claude ", 42, "never"])
    upstream.script("odd.google", deltas=["Gemini ", ["a", "list"], "never"])
    upstream.script("odd.openai", deltas=["GPT ", {"text": "an object"}, "never"])
    upstream.script("fine", deltas=["all ", "good"])
    client = await connect("user_alice")
    models = [{"provider": p, "model": m} for p, m in VENDORS.items()]
    await client.send(
        "startComparison",
        {"prompt": "scenario:odd scenario:fine", "models": [*models, {"provider": "local"}]},
    )
    events = await client.until_event("comparisonComplete")
    sid = events[0]["data"]["sessionId"]
    errors = {e["data"]["model"]: e["data"]["error"] for e in events if e["event"] == "modelError"}
    assert errors == {
        CLAUDE: "Anthropic sent a part of its answer that is not text",
        GEMINI: "Google Gemini sent a part of its answer that is not text",
        GPT: "OpenAI sent a part of its answer that is not text",
    }
    for key, partial in ((CLAUDE, "Claude "), (GEMINI, "Gemini "), (GPT, "GPT ")):
        assert_model_sequence(events, key, "error")
        assert text_of(events, key) == partial
    assert text_of(events, "llama3.2") == "all good"  # another model of the comparison
    assert events[-1]["data"]["status"] == "partial"
    rows = await saved(sid)
    assert {k: (v["status"], v["content"]) for k, v in rows.items()} == {
        CLAUDE: ("error", "Claude "),
        GEMINI: ("error", "Gemini "),
        GPT: ("error", "GPT "),
        "llama3.2": ("complete", "all good"),
    }


async def test_a_final_state_no_column_can_hold_ends_with_complete_saying_not_saved(
    upstream_providers, connect, settings
) -> None:
    """An upstream that reports an absurd token count (more than any integer column holds): the
    client still gets its one ``comparisonComplete``, and it says the state was not saved."""
    settings.PLAYGROUND_FLUSH_INTERVAL = 0.05
    upstream_providers.script("huge", deltas=["Hello"], input_tokens=10**20)
    alice = await connect("user_alice")
    await alice.send("startComparison", {"prompt": "scenario:huge", "providers": ["openai"]})
    sid = (await alice.until_event("sessionCreated"))[-1]["data"]["sessionId"]
    events = await alice.until_event("comparisonComplete")
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete", "saved": False}
    assert await saved_status(sid) == "streaming"  # not "complete" with an answer not saved
