"""End to end: the real ASGI app, the real SDKs, the fake upstream over HTTP, the database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from comparisons.models import Comparison
from tests.comparisons.conftest import Event

pytestmark = [pytest.mark.django_db(transaction=True)]

GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-haiku-4-5-20251001"


def model_events(events: list[Event], key: str) -> list[Event]:
    return [e for e in events if e["data"].get("model") == key]


def text_of(events: list[Event], key: str) -> str:
    return "".join(
        e["data"]["chunk"] for e in model_events(events, key) if e["event"] == "modelChunk"
    )


def assert_model_sequence(events: list[Event], key: str, terminal: str) -> None:
    """streaming status, chunks indexed 0..n-1 without gaps, then exactly one terminal pair."""
    mine = model_events(events, key)
    assert mine[0] == {
        "event": "modelStatus",
        "data": {"sessionId": mine[0]["data"]["sessionId"], "model": key, "status": "streaming"},
    }
    chunks = [e for e in mine if e["event"] == "modelChunk"]
    assert [c["data"]["index"] for c in chunks] == list(range(len(chunks)))
    assert mine[1 : 1 + len(chunks)] == chunks
    tail = mine[1 + len(chunks) :]
    if terminal == "complete":
        assert [e["event"] for e in tail] == ["modelComplete", "modelStatus"]
    elif terminal == "error":
        assert [e["event"] for e in tail] == ["modelError", "modelStatus"]
    else:
        assert [e["event"] for e in tail] == ["modelStatus"]
    assert tail[-1]["data"]["status"] == terminal


async def saved(session_id: str) -> Comparison:
    def load() -> Comparison:
        return Comparison.objects.prefetch_related("responses").get(pk=session_id)

    return await sync_to_async(load)()


async def test_seed_providers_form_streams_both_models_and_saves_them(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script(
        "seed.google",
        deltas=["Gem", "ini ", "says ", "hi"],
        delay=0.005,
        input_tokens=7,
        output_tokens=4,
    )
    upstream.script(
        "seed.anthropic",
        deltas=["Clau", "de ", "here"],
        delay=0.005,
        input_tokens=9,
        output_tokens=3,
    )
    client = await connect("user_alice")
    await client.send(
        "startComparison", {"prompt": "Say hi scenario:seed", "providers": ["google", "anthropic"]}
    )
    events = await client.until_event("comparisonComplete")

    created = events[0]
    assert created["event"] == "sessionCreated"
    sid = created["data"]["sessionId"]
    assert created["data"]["models"] == [
        {"key": GEMINI, "provider": "google", "modelName": GEMINI},
        {"key": CLAUDE, "provider": "anthropic", "modelName": CLAUDE},
    ]
    assert all(e["data"]["sessionId"] == sid for e in events)
    assert_model_sequence(events, GEMINI, "complete")
    assert_model_sequence(events, CLAUDE, "complete")
    assert text_of(events, GEMINI) == "Gemini says hi"
    assert text_of(events, CLAUDE) == "Claude here"
    assert events[-1] == {
        "event": "comparisonComplete",
        "data": {"sessionId": sid, "status": "complete"},
    }

    complete = {
        e["data"]["model"]: e["data"]["metrics"] for e in events if e["event"] == "modelComplete"
    }
    claude = complete[CLAUDE]
    assert (claude["inputTokens"], claude["outputTokens"], claude["tokensUsed"]) == (9, 3, 12)
    assert claude["estimatedCost"] == pytest.approx((9 * 1.0 + 3 * 5.0) / 1_000_000)
    assert claude["durationInMilliseconds"] >= claude["timeToFirstTokenInMilliseconds"] > 0
    assert complete[GEMINI]["tokensUsed"] == 11

    comparison = await saved(sid)
    assert comparison.status == "complete" and comparison.user_id == "user_alice"
    rows = {r.key: r for r in comparison.responses.all()}
    assert rows[GEMINI].content == "Gemini says hi" and rows[CLAUDE].content == "Claude here"
    assert rows[CLAUDE].output_tokens == 3 and rows[CLAUDE].status == "complete"
    assert rows[GEMINI].chunk_count == 4 and len(rows[GEMINI].timeline) == 4


async def test_models_form_sends_params_upstream_and_keys_repeats(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script("params", deltas=["ok"])
    client = await connect()
    await client.send(
        "startComparison",
        {
            "prompt": "Be brief scenario:params",
            "system": "You are terse.",
            "requestId": "req-42",
            "models": [
                {"provider": "anthropic", "model": CLAUDE, "temperature": 0.2, "maxTokens": 77},
                {"provider": "google", "model": GEMINI, "temperature": 1.5, "maxTokens": 33},
                {"provider": "anthropic", "model": CLAUDE},
            ],
        },
    )
    events = await client.until_event("comparisonComplete")
    assert events[0]["data"]["requestId"] == "req-42"
    assert [m["key"] for m in events[0]["data"]["models"]] == [CLAUDE, GEMINI, f"{CLAUDE}#2"]
    for key in (CLAUDE, GEMINI, f"{CLAUDE}#2"):
        assert_model_sequence(events, key, "complete")
        assert text_of(events, key) == "ok"
    bodies = [r.body for r in upstream.requests_for("params")]
    anthropic = [b for b in bodies if "messages" in b]
    google = [b for b in bodies if "contents" in b]
    assert (0.2, 77) in [(b.get("temperature"), b["max_tokens"]) for b in anthropic]
    assert [b.get("temperature") for b in anthropic].count(None) == 1
    assert any(
        b["system"] in ("You are terse.", [{"type": "text", "text": "You are terse."}])
        for b in anthropic
    )
    config = google[0]["generationConfig"]
    assert (config["temperature"], config["maxOutputTokens"]) == (1.5, 33)
    assert "You are terse." in str(google[0]["systemInstruction"])


async def test_one_model_failing_mid_stream_leaves_the_other_and_saves_partial_text(
    upstream_providers, connect
) -> None:
    upstream = upstream_providers
    upstream.script("half.google", deltas=["one ", "two ", "three"], delay=0.01, error_after=2)
    upstream.script("half.anthropic", deltas=["fine ", "answer"], delay=0.01)
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:half", "providers": ["google", "anthropic"]}
    )
    events = await client.until_event("comparisonComplete")
    sid = events[0]["data"]["sessionId"]
    assert_model_sequence(events, GEMINI, "error")
    assert_model_sequence(events, CLAUDE, "complete")
    assert text_of(events, GEMINI) == "one two "
    error = next(e for e in events if e["event"] == "modelError")["data"]["error"]
    assert "Google" in error or "Gemini" in error
    assert events[-1]["data"]["status"] == "partial"
    rows = {r.key: r for r in (await saved(sid)).responses.all()}
    assert (rows[GEMINI].status, rows[GEMINI].content) == ("error", "one two ")
    assert rows[GEMINI].error == error
    assert (rows[CLAUDE].status, rows[CLAUDE].content) == ("complete", "fine answer")


async def test_missing_key_fails_only_that_model(settings, upstream_providers, connect) -> None:
    settings.AI_PROVIDERS["google"]["OPTIONS"]["api_key"] = ""
    upstream_providers.script("nokey", deltas=["here"])
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:nokey", "providers": ["google", "anthropic"]}
    )
    events = await client.until_event("comparisonComplete")
    assert_model_sequence(events, GEMINI, "error")
    assert (
        "not configured" in next(e for e in events if e["event"] == "modelError")["data"]["error"]
    )
    assert text_of(events, CLAUDE) == "here"
    assert events[-1]["data"]["status"] == "partial"
    assert all(r.vendor == "anthropic" for r in upstream_providers.requests)


def _big(n: int) -> str:
    return "x" * n


INVALID: list[tuple[str, Any, str]] = [
    ("missing prompt", {"providers": ["google"]}, "prompt: Field required"),
    ("empty prompt", {"prompt": "   ", "providers": ["google"]}, "prompt must not be empty"),
    ("prompt too long", {"prompt": _big(32_001), "providers": ["google"]}, "the limit is 32000"),
    ("no models", {"prompt": "hi"}, "choose at least one model"),
    ("empty providers", {"prompt": "hi", "providers": []}, "choose at least one model"),
    (
        "too many models",
        {"prompt": "hi", "providers": ["demo"] * 7},
        "7 models requested; the limit is 6",
    ),
    ("unknown provider", {"prompt": "hi", "providers": ["nope"]}, "Unknown provider 'nope'"),
    (
        "unknown model",
        {"prompt": "hi", "models": [{"provider": "demo", "model": "demo-9"}]},
        "Demo has no model 'demo-9'",
    ),
    (
        "malformed model name",
        {"prompt": "hi", "models": [{"provider": "google", "model": "../admin"}]},
        "'../admin' is not a valid model name",
    ),
    (
        "temperature out of range",
        {"prompt": "hi", "models": [{"provider": "google", "temperature": 3}]},
        "temperature",
    ),
    (
        "maxTokens zero",
        {"prompt": "hi", "models": [{"provider": "google", "maxTokens": 0}]},
        "maxTokens",
    ),
    (
        "temperature as string",
        {"prompt": "hi", "models": [{"provider": "google", "temperature": "0.5"}]},
        "temperature",
    ),
    ("prompt as number", {"prompt": 42, "providers": ["google"]}, "prompt"),
    ("providers not a list", {"prompt": "hi", "providers": "google"}, "providers"),
    (
        "both forms",
        {"prompt": "hi", "providers": ["google"], "models": [{"provider": "google"}]},
        "not both",
    ),
    ("data not an object", ["hi"], "Invalid startComparison"),
]


@pytest.mark.parametrize(("case", "data", "message"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_start_is_a_clear_error_and_starts_nothing(
    upstream_providers, connect, case, data, message
) -> None:
    client = await connect()
    await client.send("startComparison", data)
    event = await client.receive()
    assert event["event"] == "error"
    assert message in event["data"]["message"], event
    assert await sync_to_async(Comparison.objects.count)() == 0
    assert upstream_providers.requests == []
    # The socket stays open and usable.
    await client.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    assert (await client.receive())["event"] == "sessionCreated"
    await client.until_event("comparisonComplete")


async def test_request_id_is_echoed_on_errors(upstream_providers, connect) -> None:
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "", "providers": ["google"], "requestId": "r-1"}
    )
    event = await client.receive()
    assert event["event"] == "error" and event["data"]["requestId"] == "r-1"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"event": "launchMissiles", "data": {}}', "Unknown event"),
        ('{"data": {}}', "event"),
        ("[1, 2]", "event"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(
    upstream_providers, connect, frame, message
) -> None:
    client = await connect()
    await client.send_raw(frame)
    event = await client.receive()
    assert event["event"] == "error" and message in event["data"]["message"]
    await client.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    assert (await client.receive())["event"] == "sessionCreated"


@pytest.mark.redis
async def test_end_to_end_with_the_redis_channel_layer(
    redis_channel_layer, upstream_providers, connect
) -> None:
    upstream_providers.script("redis", deltas=["a", "b", "c"], delay=0.005)
    client = await connect()
    await client.send(
        "startComparison", {"prompt": "scenario:redis", "providers": ["google", "anthropic"]}
    )
    events = await client.until_event("comparisonComplete")
    for key in (GEMINI, CLAUDE):
        assert_model_sequence(events, key, "complete")
        assert text_of(events, key) == "abc"
    assert events[-1]["data"]["status"] == "complete"


async def test_a_frame_over_the_size_limit_closes_the_socket_with_1009(
    upstream_providers, connect
) -> None:
    client = await connect()
    prompt = "x" * (256 * 1024)
    await client.send("startComparison", {"prompt": prompt, "providers": ["demo"]})
    closed = await client.communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1009}
    from comparisons.models import Comparison

    assert await Comparison.objects.acount() == 0


@pytest.mark.redis
async def test_an_idle_socket_on_the_redis_layer_stays_open(
    redis_channel_layer, upstream_providers, connect
) -> None:
    """channels-redis waits 5 s per read: an idle socket must outlive that and still work."""
    client = await connect()
    await asyncio.sleep(6.5)
    await client.send("startComparison", {"prompt": "still there?", "providers": ["demo"]})
    events = await client.until_event("comparisonComplete")
    assert events[0]["event"] == "sessionCreated"
    assert events[-1]["data"]["status"] == "complete"
