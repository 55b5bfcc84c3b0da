"""Follow-up turns over /ws: each vendor receives the right conversation (checked at the fake
upstream), turns are saved and served by REST, limits and ownership hold per turn."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from comparisons.models import Comparison, ComparisonStatus, ModelResponse, Turn
from playground.asgi import router as application

pytestmark = [pytest.mark.django_db(transaction=True)]

THREE = [{"provider": "anthropic"}, {"provider": "google"}, {"provider": "openai"}]
KEYS = {
    "anthropic": "claude-haiku-4-5-20251001",
    "google": "gemini-2.5-flash",
    "openai": "gpt-4.1-mini",
}


async def get(path: str, token: str) -> tuple[int, Any]:
    communicator = HttpCommunicator(
        application,
        "GET",
        path,
        headers=[(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
    )
    response = await communicator.get_response(timeout=10)
    return response["status"], json.loads(response["body"] or b"null")


def script_answers(upstream: Any, scenario: str) -> str:
    """Each vendor answers with its own fixed text: A0, G0, O0."""
    upstream.script(f"{scenario}.anthropic", deltas=["A", "0"])
    upstream.script(f"{scenario}.google", deltas=["G", "0"])
    upstream.script(f"{scenario}.openai", deltas=["O", "0"])
    return f"scenario:{scenario}"


async def first_turn(client: Any, prompt: str, models: list[dict[str, Any]], **extra: Any) -> str:
    await client.send("startComparison", {"prompt": prompt, "models": models, **extra})
    # The first start of a test process loads the vendor SDKs: slow on a busy machine.
    events = await client.until_event("comparisonComplete", timeout=30)
    return str(events[0]["data"]["sessionId"])


async def a_turn(client: Any, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    await client.send(event, data)
    return await client.until_event("comparisonComplete")


def conversation(vendor: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """The (role, text) pairs a vendor request carries, in the vendor's own shape."""
    if vendor == "google":
        return [(c["role"], c["parts"][0]["text"]) for c in body["contents"]]
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


@pytest.mark.timeout(60)
async def test_follow_ups_and_continue_from_send_each_vendor_the_right_history(
    upstream_providers, connect, token_for
) -> None:
    upstream = upstream_providers
    marker = script_answers(upstream, "hist")
    client = await connect("user_alice")
    prompt = f"First question {marker}"
    sid = await first_turn(client, prompt, THREE, system="Be brief.")

    # Turn 1: every model continues its own thread.
    events = await a_turn(client, "sendFollowUp", {"sessionId": sid, "prompt": "Second?"})
    started = events[0]
    assert started["event"] == "turnStarted"
    assert started["data"]["sessionId"] == sid and started["data"]["turn"] == 1
    assert started["data"]["mode"] == "followUp" and started["data"]["from"] is None
    assert [m["key"] for m in started["data"]["models"]] == list(KEYS.values())
    assert all(e["data"]["sessionId"] == sid for e in events)
    assert all(e["data"].get("turn") == 1 for e in events)
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}
    own = {"anthropic": "A0", "google": "G0", "openai": "O0"}
    role = {"anthropic": "assistant", "google": "model", "openai": "assistant"}
    for vendor, answer in own.items():
        request = upstream.requests_for(f"hist.{vendor}")[-1]
        assert conversation(vendor, request.body) == [
            ("user", prompt),
            (role[vendor], answer),
            ("user", "Second?"),
        ], vendor
    # The system prompt stays with every turn.
    assert upstream.requests_for("hist.anthropic")[-1].body["system"] == "Be brief."
    assert upstream.requests_for("hist.openai")[-1].body["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    google = upstream.requests_for("hist.google")[-1].body
    assert google["systemInstruction"]["parts"] == [{"text": "Be brief."}]

    # Turn 2: every model continues from Gemini's thread (its answers become the shared context).
    events = await a_turn(
        client,
        "continueFrom",
        {"sessionId": sid, "model": KEYS["google"], "prompt": "Third?"},
    )
    assert events[0]["event"] == "turnStarted"
    assert events[0]["data"]["mode"] == "continueFrom"
    assert events[0]["data"]["from"] == KEYS["google"]
    for vendor in own:
        request = upstream.requests_for(f"hist.{vendor}")[-1]
        assert conversation(vendor, request.body) == [
            ("user", prompt),
            (role[vendor], "G0"),
            ("user", "Second?"),
            (role[vendor], "G0"),
            ("user", "Third?"),
        ], vendor

    # Turn 3: only Claude; its thread now holds the shared context and its own last answer.
    before = {vendor: len(upstream.requests_for(f"hist.{vendor}")) for vendor in own}
    events = await a_turn(
        client,
        "sendFollowUp",
        {"sessionId": sid, "prompt": "Fourth?", "models": [KEYS["anthropic"]]},
    )
    assert [m["key"] for m in events[0]["data"]["models"]] == [KEYS["anthropic"]]
    assert len(upstream.requests_for("hist.google")) == before["google"]
    assert len(upstream.requests_for("hist.openai")) == before["openai"]
    request = upstream.requests_for("hist.anthropic")[-1]
    assert conversation("anthropic", request.body)[-3:] == [
        ("user", "Third?"),
        ("assistant", "A0"),
        ("user", "Fourth?"),
    ]

    # Saved turn by turn; REST returns the turns with their own metrics.
    status, body = await get(f"/sessions/{sid}", token_for("user_alice"))
    assert status == 200
    assert body["prompt"] == prompt and set(body["responses"]) == set(KEYS.values())
    turns = body["turns"]
    assert [(t["turn"], t["prompt"], t["mode"], t["from"]) for t in turns] == [
        (0, prompt, None, None),
        (1, "Second?", "followUp", None),
        (2, "Third?", "continueFrom", KEYS["google"]),
        (3, "Fourth?", "followUp", None),
    ]
    assert turns[3]["responses"].keys() == {KEYS["anthropic"]}
    for turn in turns:
        assert turn["status"] == "complete"
        for key, response in turn["responses"].items():
            metrics = response["metrics"]
            assert metrics["timeToFirstTokenInMilliseconds"] is not None, (turn["turn"], key)
            assert metrics["tokensUsed"] > 0 and metrics["estimatedCost"] is not None
    assert turns[1]["responses"][KEYS["google"]]["content"] == "G0"
    assert body["status"] == "complete"

    # Another user: 404, over REST and the socket alike.
    status, _ = await get(f"/sessions/{sid}", token_for("user_mallory"))
    assert status == 404
    mallory = await connect("user_mallory")
    await mallory.send("sendFollowUp", {"sessionId": sid, "prompt": "mine?"})
    assert (await mallory.receive())["data"] == {"message": f"Session {sid} not found"}
    await mallory.send(
        "continueFrom", {"sessionId": sid, "model": KEYS["google"], "prompt": "mine?"}
    )
    assert (await mallory.receive())["data"] == {"message": f"Session {sid} not found"}
    assert await sync_to_async(Turn.objects.filter(comparison_id=sid).count)() == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sessionId": "x"}, "Invalid sendFollowUp: prompt: Field required"),
        (
            {"sessionId": "x", "prompt": "  "},
            "Invalid sendFollowUp: prompt: prompt must not be empty",
        ),
        (
            {"sessionId": "x", "prompt": 3},
            "Invalid sendFollowUp: prompt: Input should be a valid string",
        ),
        (
            {"sessionId": "x", "prompt": "a", "models": []},
            "Invalid sendFollowUp: models: List should have at least 1 item",
        ),
        (
            {"sessionId": "x", "prompt": "a", "models": ["m", "m"]},
            "Invalid sendFollowUp: models: each model may be named once",
        ),
        (
            {"sessionId": "x", "prompt": "a", "models": "m"},
            "Invalid sendFollowUp: models: Input should be a valid list",
        ),
    ],
)
async def test_bad_follow_ups_get_a_named_error(connect, data, message) -> None:
    client = await connect("user_alice")
    await client.send("sendFollowUp", data)
    assert (await client.receive())["data"]["message"].startswith(message)
    await client.expect_nothing()


async def test_bad_continue_from_gets_a_named_error(upstream_providers, connect) -> None:
    client = await connect("user_alice")
    await client.send("continueFrom", {"sessionId": "x", "prompt": "a"})
    reply = await client.receive()
    assert reply["data"]["message"] == "Invalid continueFrom: model: Field required"
    sid = await first_turn(client, "hello", [{"provider": "anthropic"}, {"provider": "google"}])
    await client.send("continueFrom", {"sessionId": sid, "model": "nope", "prompt": "a"})
    assert (await client.receive())["data"] == {"message": f"Session {sid} has no model 'nope'"}
    await client.send("sendFollowUp", {"sessionId": sid, "prompt": "a", "models": ["nope"]})
    assert (await client.receive())["data"] == {"message": f"Session {sid} has no model 'nope'"}
    await client.expect_nothing()
    assert await sync_to_async(Turn.objects.count)() == 0


async def test_a_follow_up_while_the_turn_streams_is_refused(upstream_providers, connect) -> None:
    upstream_providers.script("slow", deltas=["x"] * 200, delay=0.02)
    client = await connect("user_alice")
    await client.send("startComparison", {"prompt": "scenario:slow", "providers": ["anthropic"]})
    created = await client.until_event("sessionCreated")
    sid = created[-1]["data"]["sessionId"]
    await client.send("sendFollowUp", {"sessionId": sid, "prompt": "next"})
    refusal = await client.until_event("error")
    assert refusal[-1]["data"]["message"] == (
        f"Session {sid} is still answering; wait for comparisonComplete "
        "(or cancel it) before sending a follow-up"
    )
    await client.send("cancelComparison", {"sessionId": sid})
    await client.until_event("comparisonComplete")
    # Once it ended (here: cancelled), the follow-up goes.
    events = await a_turn(client, "sendFollowUp", {"sessionId": sid, "prompt": "next"})
    assert events[0]["event"] == "turnStarted"
    assert events[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}


@pytest.mark.parametrize("limit", ["running", "per_minute"])
async def test_limits_apply_per_turn_and_a_refused_turn_reaches_no_provider(
    limit, settings, upstream_providers, connect
) -> None:
    client = await connect("user_alice")
    sid = await first_turn(client, "hello", [{"provider": "anthropic"}])
    upstream_providers.script("refusedturn", deltas=["no"])
    if limit == "running":
        settings.PLAYGROUND_MAX_RUNNING_PER_USER = 1
        await sync_to_async(Comparison.objects.create)(user_id="user_alice", prompt="elsewhere")
        message = "You already have 1 comparisons running (limit 1)"
    else:
        settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 1  # the first turn used it
        message = "You started 1 comparisons in the last minute (limit 1)"
    await client.send("sendFollowUp", {"sessionId": sid, "prompt": "scenario:refusedturn"})
    reply = await client.receive()
    assert reply["event"] == "error" and reply["data"]["message"].startswith(message)
    await client.expect_nothing()
    assert upstream_providers.requests_for("refusedturn") == []
    assert await sync_to_async(Turn.objects.count)() == 0
    saved = await sync_to_async(Comparison.objects.get)(pk=sid)
    assert saved.status == ComparisonStatus.COMPLETE
    if limit == "per_minute":
        # A follow-up counts as a start too: with room for two, the second turn is refused.
        settings.PLAYGROUND_MAX_STARTS_PER_MINUTE = 2
        events = await a_turn(client, "sendFollowUp", {"sessionId": sid, "prompt": "ok"})
        assert events[-1]["data"]["turn"] == 1
        await client.send("sendFollowUp", {"sessionId": sid, "prompt": "scenario:refusedturn"})
        reply = await client.receive()
        assert reply["data"]["message"].startswith("You started 2 comparisons in the last minute")
        assert upstream_providers.requests_for("refusedturn") == []


CONTEXT_ERRORS: dict[str, dict[str, Any]] = {
    "anthropic": {
        "status": 400,
        "error_message": "prompt is too long: 208310 tokens > 200000 maximum",
    },
    "google": {
        "status": 400,
        "error_message": (
            "The input token count (1199870) exceeds the maximum number of tokens allowed "
            "(1048576)."
        ),
    },
    "openai": {
        "status": 400,
        "error_code": "context_length_exceeded",
        "error_message": (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130532 tokens. Please reduce the length of the messages."
        ),
    },
}


@pytest.mark.parametrize("vendor", sorted(CONTEXT_ERRORS))
async def test_a_context_length_error_is_a_clear_model_error(
    vendor, upstream_providers, connect
) -> None:
    upstream_providers.script(f"toolong.{vendor}", **CONTEXT_ERRORS[vendor])
    client = await connect("user_alice")
    sid = await first_turn(client, "hello", [{"provider": vendor}])
    events = await a_turn(
        client, "sendFollowUp", {"sessionId": sid, "prompt": "scenario:toolong and more"}
    )
    [error] = [e for e in events if e["event"] == "modelError"]
    assert error["data"]["turn"] == 1
    text = error["data"]["error"]
    assert text.startswith("The conversation is too long for this model's context window (")
    assert CONTEXT_ERRORS[vendor]["error_message"].rstrip(".") in text
    assert events[-1]["data"] == {"sessionId": sid, "status": "error", "turn": 1}
    row = await sync_to_async(ModelResponse.all_turns.get)(comparison_id=sid, turn=1)
    assert row.status == "error" and row.error == text
    # The first turn is untouched.
    first = await sync_to_async(ModelResponse.objects.get)(comparison_id=sid)
    assert first.status == "complete"


async def test_a_blind_follow_up_keeps_the_models_hidden(upstream_providers, connect) -> None:
    script_answers(upstream_providers, "blindturn")
    client = await connect("user_alice")
    await client.send(
        "startComparison",
        {
            "prompt": "Which? scenario:blindturn",
            "models": [{"provider": "anthropic"}, {"provider": "google"}],
            "blind": True,
        },
    )
    events = await client.until_event("comparisonComplete")
    sid = events[0]["data"]["sessionId"]
    turn = await a_turn(client, "sendFollowUp", {"sessionId": sid, "prompt": "And then?"})
    turn += await a_turn(client, "continueFrom", {"sessionId": sid, "model": "B", "prompt": "So?"})
    raw = json.dumps(turn)
    for name in ("anthropic", "google", "claude", "gemini"):
        assert name not in raw.lower(), name
    started = [e for e in turn if e["event"] == "turnStarted"]
    assert [m for m in started[0]["data"]["models"]] == [
        {"key": "A", "provider": None, "modelName": None},
        {"key": "B", "provider": None, "modelName": None},
    ]
    assert started[1]["data"]["from"] == "B"
    completes = [e for e in turn if e["event"] == "modelComplete"]
    assert completes and all(e["data"]["metrics"]["estimatedCost"] is None for e in completes)
    # A second tab's snapshot of the conversation withholds them too, in every turn.
    other = await connect("user_alice")
    await other.send("watchSession", {"sessionId": sid})
    snapshot = (await other.until_event("sessionSnapshot"))[-1]["data"]
    assert snapshot["turn"] == 2 and [t["turn"] for t in snapshot["turns"]] == [0, 1, 2]
    assert "claude" not in json.dumps(snapshot) and "gemini" not in json.dumps(snapshot)
    # Each turn can be voted on (one vote per turn); a turn that does not exist cannot.
    await client.send("vote", {"sessionId": sid, "winner": "B", "turn": 2})
    assert (await client.receive())["data"] == {"sessionId": sid, "turn": 2, "winner": "B"}
    await client.send("vote", {"sessionId": sid, "winner": "A", "turn": 3})
    refused = (await client.receive())["data"]["message"]
    assert refused.startswith("Turn 3 does not exist; this comparison has 3 turn(s)")


async def test_another_tab_sees_follow_up_turns_live_and_in_its_snapshot(
    upstream_providers, connect
) -> None:
    script_answers(upstream_providers, "tabs")
    client = await connect("user_alice")
    sid = await first_turn(
        client, "scenario:tabs", [{"provider": "anthropic"}, {"provider": "openai"}]
    )
    watcher = await connect("user_alice")
    await watcher.send("watchSession", {"sessionId": sid})
    await watcher.until_event("comparisonComplete")  # the saved state and its end marker

    await a_turn(client, "sendFollowUp", {"sessionId": sid, "prompt": "Again?"})
    seen = await watcher.until_event("comparisonComplete")
    assert seen[0]["event"] == "turnStarted" and seen[0]["data"]["turn"] == 1
    chunks: dict[str, str] = {}
    for event in seen:
        if event["event"] == "modelChunk":
            chunks[event["data"]["model"]] = (
                chunks.get(event["data"]["model"], "") + (event["data"]["chunk"])
            )
    assert chunks == {KEYS["anthropic"]: "A0", KEYS["openai"]: "O0"}
    assert seen[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}
    await watcher.expect_nothing()

    # A late tab gets every turn in its snapshot: the last one's models for chunk accounting.
    late = await connect("user_alice")
    await late.send("watchSession", {"sessionId": sid})
    got = await late.until_event("comparisonComplete")
    snapshot = got[0]["data"]
    assert snapshot["turn"] == 1 and snapshot["status"] == "complete"
    assert [(t["turn"], t["prompt"]) for t in snapshot["turns"]] == [
        (0, "scenario:tabs"),
        (1, "Again?"),
    ]
    assert [m["content"] for m in snapshot["models"]] == ["A0", "O0"]
    assert snapshot["turns"][1]["models"] == snapshot["models"]
    assert got[-1]["data"] == {"sessionId": sid, "status": "complete", "turn": 1}


async def test_exports_hold_every_turn_and_others_get_404(
    upstream_providers, connect, token_for
) -> None:
    marker = script_answers(upstream_providers, "export")
    client = await connect("user_alice")
    sid = await first_turn(
        client, f"Hi {marker}", [{"provider": "anthropic"}, {"provider": "openai"}]
    )
    await a_turn(
        client,
        "sendFollowUp",
        {"sessionId": sid, "prompt": "=cmd|' /C calc'!A0", "models": [KEYS["openai"]]},
    )

    async def export(fmt: str, user: str) -> tuple[int, str]:
        communicator = HttpCommunicator(
            application,
            "GET",
            f"/sessions/{sid}/export?format={fmt}",
            headers=[
                (b"host", b"testserver"),
                (b"authorization", f"Bearer {token_for(user)}".encode()),
            ],
        )
        response = await communicator.get_response(timeout=10)
        return response["status"], response["body"].decode()

    status, csv_text = await export("csv", "user_alice")
    assert status == 200
    rows = [line.split(",") for line in csv_text.strip().splitlines()[1:]]
    assert [(row[1], row[2], row[6]) for row in rows] == [
        ("0", KEYS["anthropic"], "A0"),
        ("0", KEYS["openai"], "O0"),
        ("1", KEYS["openai"], "O0"),
    ]
    status, markdown = await export("md", "user_alice")
    assert status == 200
    assert "## Turn 1" in markdown and "=cmd|' /C calc'!A0" in markdown
    assert markdown.index("## Prompt") < markdown.index("## Turn 1")
    status, text = await export("json", "user_alice")
    assert [t["turn"] for t in json.loads(text)["turns"]] == [0, 1]
    for fmt in ("csv", "md", "json"):
        status, _ = await export(fmt, "user_mallory")
        assert status == 404, fmt
