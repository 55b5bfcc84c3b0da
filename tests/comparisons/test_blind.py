"""Blind battles over /ws: keys A, B, …, no model or provider name in any frame, snapshot or log
line until the reveal; votes and the reveal as socket events."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from arena import services as arena_services
from comparisons.models import Comparison
from tests.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-haiku-4-5-20251001"
GPT = "gpt-4.1-mini"
NAMES = ("demo-echo", "demo-fast", CLAUDE, GPT, "anthropic", "openai", "claude", "gpt")
MODELS = [
    {"provider": "demo", "model": "demo-echo"},
    {"provider": "demo", "model": "demo-fast"},
    {"provider": "anthropic", "model": CLAUDE},
    {"provider": "openai", "model": GPT},
]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [name for name in NAMES if name in lowered]


async def test_nothing_names_a_model_before_the_reveal(
    upstream_providers: FakeUpstream, connect, caplog: pytest.LogCaptureFixture
) -> None:
    # INFO and up: what a deployment logs (the vendor SDKs' DEBUG lines echo whole requests).
    caplog.set_level(logging.INFO)
    upstream = upstream_providers
    upstream.script(
        "blind.anthropic",
        deltas=["Paris ", "is ", "the ", "capital."] * 5,
        delay=0.02,
        served_model=f"{CLAUDE}-preview",
    )
    upstream.script(
        "blind.openai", status=400, error_message=f"The model {GPT} does not exist (openai)"
    )
    alice = await connect("user_alice")
    await alice.send(
        "startComparison",
        {"prompt": "Capital of France? scenario:blind", "models": MODELS, "blind": True},
    )
    first = await alice.until(lambda e: e["event"] == "modelChunk")
    created = first[0]["data"]
    sid = created["sessionId"]
    assert created["blind"] is True
    assert [m["key"] for m in created["models"]] == ["A", "B", "C", "D"]
    assert all(m["provider"] is None and m["modelName"] is None for m in created["models"])
    # A second socket of the same user watches the live run (the run's snapshot).
    watcher = await connect("user_alice")
    await watcher.send("watchSession", {"sessionId": sid})
    watched = await watcher.until_event("comparisonComplete", timeout=30)
    assert watched[0]["event"] == "sessionSnapshot"
    events = first + await alice.until_event("comparisonComplete", timeout=30)
    # And the saved state, once it ended (the database's snapshot).
    await watcher.send("watchSession", {"sessionId": sid})
    saved = await watcher.until_event("comparisonComplete")
    frames = [json.dumps(e, ensure_ascii=False) for e in events + watched + saved]
    assert [leaks(f) for f in frames if leaks(f)] == []
    assert [r.getMessage() for r in caplog.records if leaks(r.getMessage())] == []
    errors = [e["data"] for e in events if e["event"] == "modelError"]
    assert len(errors) == 1 and "revealed" in errors[0]["error"]
    completes = [e["data"]["metrics"] for e in events if e["event"] == "modelComplete"]
    assert len(completes) == 3
    assert all(m["estimatedCost"] is None and m["responseModel"] is None for m in completes)
    assert all(m["outputTokens"] > 0 for m in completes)
    comparison = await Comparison.objects.aget(pk=sid)
    assert comparison.blind and comparison.identity_hidden
    # Once revealed, the saved snapshot names the models and shows the vendor's error.
    await sync_to_async(arena_services.comparison_reveal)(user_id="user_alice", comparison_id=sid)
    await watcher.send("watchSession", {"sessionId": sid})
    after = await watcher.until_event("comparisonComplete")
    named = {(m["provider"], m["modelName"]) for m in after[0]["data"]["models"]}
    assert named == {(m["provider"], m["model"]) for m in MODELS}
    assert any(GPT in (m.get("error") or "") for m in after[0]["data"]["models"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": ["demo"], "blind": True}, "a blind comparison needs at least two models"),
        ({"providers": ["demo", "demo"], "blind": "yes"}, "blind: Input should be a valid boolean"),
    ],
)
async def test_a_bad_blind_start_is_refused_readably(
    upstream_providers: FakeUpstream, connect, data: dict[str, Any], message: str
) -> None:
    client = await connect()
    await client.send("startComparison", {"prompt": "hi", **data})
    event = await client.receive()
    assert event["event"] == "error"
    assert message in event["data"]["message"]
    assert await Comparison.objects.acount() == 0
