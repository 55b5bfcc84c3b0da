"""Blind battles over /ws: keys A, B, …, no model or provider name in any frame, snapshot or log
line until the reveal; votes and the reveal as socket events."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from arena import services as arena_services
from arena.models import SelfNamedFlag, Tag, Vote
from comparisons import services as comparison_services
from comparisons.frames import ModelChoice
from comparisons.live.core import LiveComparisons
from comparisons.live.registry import RunControl
from comparisons.live.run import ComparisonRun
from comparisons.live.subscribers import Subscriber
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


async def _blind_battle(client: Any) -> tuple[str, list[dict[str, Any]]]:
    models = [
        {"provider": "demo", "model": "demo-echo"},
        {"provider": "demo", "model": "demo-fast"},
    ]
    await client.send("startComparison", {"prompt": "hi", "models": models, "blind": True})
    events = await client.until_event("comparisonComplete")
    return events[0]["data"]["sessionId"], events


async def test_vote_undo_vote_and_reveal_over_the_socket(upstream_providers, connect) -> None:
    alice = await connect("user_alice")
    sid, _ = await _blind_battle(alice)
    await alice.send("vote", {"sessionId": sid, "winner": "B"})
    assert await alice.receive() == {
        "event": "voteRecorded",
        "data": {"sessionId": sid, "turn": 0, "winner": "B"},
    }
    await alice.send("unvote", {"sessionId": sid})
    assert (await alice.receive())["event"] == "voteRetracted"
    await alice.send("vote", {"sessionId": sid, "winner": "A", "turn": 0})
    assert (await alice.receive())["data"]["winner"] == "A"
    await alice.send("reveal", {"sessionId": sid})
    revealed = await alice.receive()
    assert revealed["event"] == "revealed"
    models = revealed["data"]["models"]
    assert [m["key"] for m in models] == ["A", "B"]
    assert {m["modelName"] for m in models} == {"demo-echo", "demo-fast"}
    assert {m["provider"] for m in models} == {"demo"}
    # Revealed: the blind vote is locked, and it counts on the leaderboard.
    await alice.send("unvote", {"sessionId": sid})
    locked = await alice.receive()
    assert locked["event"] == "error" and "can no longer be undone" in locked["data"]["message"]
    board = await sync_to_async(arena_services.leaderboard_current)(user_id="user_alice")
    winner = next(m["modelName"] for m in models if m["key"] == "A")
    assert board["models"][0]["model"] == winner and board["models"][0]["wins"] == 1


@pytest.mark.parametrize(
    ("event", "data", "message"),
    [
        ("vote", {"sessionId": "SID", "winner": "Z"}, "Unknown winner 'Z'"),
        ("vote", {"sessionId": "SID", "winner": "A", "turn": 3}, "Turn 3 does not exist"),
        ("vote", {"sessionId": "SID", "winner": "A", "turn": "0"}, "turn: Input should be"),
        ("vote", {"sessionId": "SID"}, "Invalid vote: winner: Field required"),
        ("unvote", {"sessionId": "SID"}, "No vote on turn 0"),
        ("reveal", {}, "Invalid reveal: sessionId: Field required"),
        ("flag", {"sessionId": "SID"}, "Invalid flag: key: Field required"),
        ("flag", {"sessionId": "SID", "key": "Z"}, "Unknown key 'Z'"),
        ("flag", {"sessionId": "SID", "key": "A", "turn": 2}, "Turn 2 does not exist"),
        ("flag", {"sessionId": "SID", "key": 1}, "key: Input should be a valid string"),
        ("unflag", {"sessionId": "SID", "key": "A"}, "Answer A of turn 0 is not flagged"),
        ("setTags", {"sessionId": "SID"}, "Invalid setTags: tags: Field required"),
        ("setTags", {"sessionId": "SID", "tags": "code"}, "tags: Input should be a valid list"),
        ("setTags", {"sessionId": "SID", "tags": [" "]}, "A tag has 1 to 40 characters"),
        ("setTags", {"sessionId": "SID", "tags": ["x\u0007"]}, "control characters"),
        ("setTags", {"sessionId": "SID", "tags": [f"t{n}" for n in range(11)]}, "At most 10"),
    ],
)
async def test_bad_arena_events_get_a_readable_error(
    upstream_providers, connect, event: str, data: dict[str, Any], message: str
) -> None:
    alice = await connect("user_alice")
    sid, _ = await _blind_battle(alice)
    await alice.send(event, {k: sid if v == "SID" else v for k, v in data.items()})
    answer = await alice.receive()
    assert answer["event"] == "error"
    assert message in answer["data"]["message"]


@pytest.mark.parametrize("event", ["vote", "unvote", "reveal", "flag", "unflag", "setTags"])
async def test_another_users_comparison_is_not_found(upstream_providers, connect, event) -> None:
    alice = await connect("user_alice")
    sid, _ = await _blind_battle(alice)
    mallory = await connect("user_mallory")
    await mallory.send(event, {"sessionId": sid, "winner": "A", "key": "A", "tags": ["x"]})
    answer = await mallory.receive()
    assert answer == {"event": "error", "data": {"message": f"Session {sid} not found"}}
    comparison = await Comparison.objects.aget(pk=sid)
    assert comparison.identity_hidden
    assert not await SelfNamedFlag.objects.filter(comparison_id=sid).aexists()
    assert not await Tag.objects.filter(comparison_id=sid).aexists()


async def test_flag_and_tags_over_the_socket(upstream_providers, connect) -> None:
    """A flagged answer voids the turn's vote until the flag is withdrawn; tags are stored
    normalised and re-rank the leaderboard; after the reveal flags are refused."""
    alice = await connect("user_alice")
    sid, _ = await _blind_battle(alice)
    await alice.send("vote", {"sessionId": sid, "winner": "A"})
    assert (await alice.receive())["event"] == "voteRecorded"
    await alice.send("flag", {"sessionId": sid, "key": "B"})
    assert await alice.receive() == {
        "event": "flagged",
        "data": {"sessionId": sid, "turn": 0, "key": "B"},
    }
    vote = await Vote.objects.aget(comparison_id=sid)
    assert vote.void and not vote.counted
    await alice.send("unflag", {"sessionId": sid, "key": "B", "turn": 0})
    assert await alice.receive() == {
        "event": "unflagged",
        "data": {"sessionId": sid, "turn": 0, "key": "B"},
    }
    assert (await Vote.objects.aget(comparison_id=sid)).counted
    await alice.send("setTags", {"sessionId": sid, "tags": [" Code ", "MATH", "code"]})
    assert await alice.receive() == {
        "event": "tagsSet",
        "data": {"sessionId": sid, "tags": ["code", "math"]},
    }
    await alice.send("flag", {"sessionId": sid, "key": "A"})
    assert (await alice.receive())["event"] == "flagged"
    await alice.send("reveal", {"sessionId": sid})
    assert (await alice.receive())["event"] == "revealed"
    board = await sync_to_async(arena_services.leaderboard_current)(
        user_id="user_alice", tag="code"
    )
    assert board["votes"] == 0  # flagged before the reveal: void
    await alice.send("unflag", {"sessionId": sid, "key": "A"})
    refused = await alice.receive()
    assert refused["event"] == "error" and "before the reveal" in refused["data"]["message"]
    await alice.send("setTags", {"sessionId": sid, "tags": []})
    assert (await alice.receive())["data"]["tags"] == []


async def test_a_recorded_replay_of_a_hidden_battle_names_no_model(
    upstream_providers, connect
) -> None:
    from comparisons.events import Frame
    from comparisons.playback import comparison_play_recorded
    from comparisons.selectors import comparison_get

    alice = await connect("user_alice")
    sid, _ = await _blind_battle(alice)
    comparison = await sync_to_async(comparison_get)(user_id="user_alice", comparison_id=sid)
    assert comparison is not None
    frames: list[Frame] = []

    async def publish(frame: Frame) -> None:
        frames.append(frame)

    await comparison_play_recorded(comparison=comparison, speed=1000.0, publish=publish)
    assert frames[0].event == "sessionSnapshot" and frames[-1].event == "comparisonComplete"
    assert sum(f.event == "modelChunk" for f in frames) > 0
    assert [f.ws for f in frames if leaks(f.ws)] == []


async def test_a_vote_mid_stream_can_stop_the_rest(upstream_providers, connect) -> None:
    """``vote {…, stop: true}`` records the vote, then stops the models still streaming."""
    # 30 s answers: far from done when the vote comes, however busy the machine (the demo's
    # answers end within ~3 s, which a loaded machine's vote could come after).
    for vendor in ("anthropic", "openai"):
        upstream_providers.script(f"votestop.{vendor}", deltas=["word "] * 600, delay=0.05)
    alice = await connect("user_alice")
    models = [{"provider": "anthropic", "model": CLAUDE}, {"provider": "openai", "model": GPT}]
    prompt = "Tell me a long story. scenario:votestop"
    await alice.send("startComparison", {"prompt": prompt, "models": models, "blind": True})
    first = await alice.until(lambda e: e["event"] == "modelChunk", timeout=25)
    sid = first[0]["data"]["sessionId"]
    await alice.send("vote", {"sessionId": sid, "winner": "A", "stop": True})
    rest = await alice.until_event("comparisonComplete", timeout=25)
    recorded = [e["data"] for e in rest if e["event"] == "voteRecorded"]
    assert recorded == [{"sessionId": sid, "turn": 0, "winner": "A"}]
    statuses = [e["data"]["status"] for e in rest if e["event"] == "modelStatus"]
    assert "cancelled" in statuses
    assert rest[-1]["data"]["status"] in ("cancelled", "partial")
    vote = await Vote.objects.aget(comparison_id=sid)
    assert vote.winner == "A" and vote.counted
    # A stop with nothing left streaming is no error: the vote stands.
    await alice.send("vote", {"sessionId": sid, "winner": "B", "stop": True})
    assert (await alice.receive())["data"]["winner"] == "B"
    await alice.send("vote", {"sessionId": sid, "winner": "B", "stop": "yes"})
    refused = await alice.receive()
    assert refused["event"] == "error"
    assert "stop: Input should be a valid boolean" in refused["data"]["message"]


class _HeldCleanup(RunControl):
    """Holds an ended run in this process (its clean-up) until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def leave(self, run: ComparisonRun) -> None:
        await self.go.wait()
        await super().leave(run)


class _Until(Subscriber):
    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[Any] = []
        self.complete = asyncio.Event()

    async def send(self, frame: Any) -> None:
        self.frames.append(json.loads(frame.ws))
        if frame.event == "comparisonComplete":
            self.complete.set()


async def test_a_watch_after_the_end_and_a_reveal_names_the_models_while_the_run_cleans_up() -> (
    None
):
    """The run has sent its end (saved) but is still being cleaned up in this process when the
    owner reveals it through REST: a watch then answers from the database, with the names (the
    run's memory still hid them; seen in a busy full run)."""
    control = _HeldCleanup()
    live = LiveComparisons(control=control)
    slots = await sync_to_async(comparison_services.comparison_plan)(
        choices=[ModelChoice(provider="demo"), ModelChoice(provider="demo", model="demo-fast")]
    )
    starter = _Until("starter")
    run = await live.launch(user_id="user_alice", prompt="hi", slots=slots, blind=True)
    await run.release(starter)
    try:
        async with asyncio.timeout(20):
            await starter.complete.wait()
        await sync_to_async(arena_services.comparison_reveal)(
            user_id="user_alice", comparison_id=run.comparison_id
        )
        watcher = _Until("watcher")
        await live.connect(user_id="user_alice", subscriber=watcher).watch(run.comparison_id)
        async with asyncio.timeout(10):
            await watcher.complete.wait()
        snapshot = watcher.frames[0]
        assert snapshot["event"] == "sessionSnapshot"
        assert {(m["provider"], m["modelName"]) for m in snapshot["data"]["models"]} == {
            ("demo", "demo-echo"),
            ("demo", "demo-fast"),
        }
    finally:
        control.go.set()
        async with asyncio.timeout(10):
            await run.done.wait()
