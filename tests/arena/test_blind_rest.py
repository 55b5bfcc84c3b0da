"""Blind comparisons over REST: keys A, B, …; nothing names a model until the reveal; votes,
undo, flags; another user's comparison is a 404 on every endpoint."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from comparisons import services
from comparisons.models import Comparison
from tests.arena.conftest import IDENTITY_WORDS, SLOTS, call, make_comparison

pytestmark = [pytest.mark.django_db(transaction=True)]


def assert_no_identity(text: str) -> None:
    lowered = text.lower()
    leaked = [word for word in IDENTITY_WORDS if word in lowered]
    assert not leaked, f"model identity leaked: {leaked} in {text[:400]}"


async def test_blind_session_hides_every_model_detail_until_revealed(tokens) -> None:
    three = [*SLOTS, services.SlotSpec("openai", "gpt-4.1-mini")]
    comparison = await sync_to_async(make_comparison)(user_id="user_alice", slots=three)
    token = tokens("user_alice")

    listing = await call("GET", "/sessions", token)
    detail = await call("GET", f"/sessions/{comparison.id}", token)
    arena = await call("GET", f"/sessions/{comparison.id}/arena", token)
    for reply in (listing, detail, arena):
        assert reply.status == 200
        assert_no_identity(reply.text)
    session = detail.json()
    assert session["blind"] is True and session["revealed"] is False
    assert [m["key"] for m in session["models"]] == ["A", "B", "C"]
    assert all(m["provider"] is None and m["modelName"] is None for m in session["models"])
    answer = session["responses"]["A"]
    assert answer["content"].startswith("Answer 0") and answer["finishReason"] is None
    assert answer["metrics"]["estimatedCost"] is None
    assert answer["metrics"]["responseModel"] is None
    assert answer["metrics"]["outputTokens"] == 40
    failed = session["responses"]["C"]
    assert failed["status"] == "error" and failed["error"].startswith("The model failed")

    revealed = await call("POST", f"/sessions/{comparison.id}/reveal", token)
    assert revealed.status == 200
    body = revealed.json()
    assert body["revealed"] is True
    assert {(m["provider"], m["modelName"]) for m in body["models"]} == {
        (s.provider, s.model) for s in three
    }
    assert "overloaded" in body["responses"]["C"]["error"]
    assert body["responses"]["A"]["metrics"]["estimatedCost"] is not None
    again = await call("GET", f"/sessions/{comparison.id}", token)
    assert again.json() == body


async def test_blind_order_is_random_and_an_open_comparison_shows_names(tokens) -> None:
    def orders() -> set[str]:
        seen = set()
        for _ in range(30):
            c = make_comparison(user_id="user_order")
            seen.add(c.responses.get(key="A").provider)
        return seen

    assert await sync_to_async(orders)() == {"anthropic", "google"}
    open_one = await sync_to_async(make_comparison)(user_id="user_alice", blind=False)
    body = (await call("GET", f"/sessions/{open_one.id}", tokens("user_alice"))).json()
    assert body["blind"] is False and body["revealed"] is True
    assert body["models"][0]["provider"] == "anthropic"


def test_a_blind_comparison_needs_two_models_and_is_saved_blind(transactional_db) -> None:
    with pytest.raises(services.BlindNeedsTwoModels):
        services.comparison_create(
            user_id="u", prompt="p", slots=SLOTS[:1], blind=True, enforce_limits=False
        )
    # With the limits checked (on PostgreSQL: the pipelined insert), the flag is stored too.
    created = services.comparison_create(user_id="u", prompt="p", slots=SLOTS, blind=True)
    saved = Comparison.objects.get(pk=created.pk)
    assert saved.blind and saved.identity_hidden
    assert sorted(saved.responses.values_list("key", flat=True)) == ["A", "B"]


async def test_vote_change_undo_and_lock_after_reveal(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    token = tokens("user_alice")
    path = f"/sessions/{comparison.id}/votes/0"

    first = await call("PUT", path, token, {"winner": "A"})
    assert first.status == 200, first.text
    vote = first.json()
    assert vote["winner"] == "A" and vote["counted"] is True and vote["models"] is None
    assert_no_identity(first.text)
    changed = await call("PUT", path, token, {"winner": "tie"})
    assert changed.status == 200 and changed.json()["winner"] == "tie"
    state = (await call("GET", f"/sessions/{comparison.id}/arena", token)).json()
    assert [v["winner"] for v in state["votes"]] == ["tie"]  # one vote per user and turn

    assert (await call("DELETE", path, token)).status == 204
    assert (await call("DELETE", path, token)).status == 404
    assert (await call("GET", f"/sessions/{comparison.id}/arena", token)).json()["votes"] == []

    final = await call("PUT", path, token, {"winner": "B", "reveal": True})
    assert final.status == 200
    assert set(final.json()["models"].values()) == {
        "anthropic:claude-haiku-4-5-20251001",
        "google:gemini-2.5-flash",
    }
    locked = await call("PUT", path, token, {"winner": "A"})
    assert locked.status == 409 and "revealed" in locked.json()["message"]
    assert (await call("DELETE", path, token)).status == 409


async def test_votes_on_open_comparisons_change_freely_and_do_not_count(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice", blind=False)
    token = tokens("user_alice")
    path = f"/sessions/{comparison.id}/votes/0"
    key = "claude-haiku-4-5-20251001"
    reply = await call("PUT", path, token, {"winner": key})
    assert reply.status == 200 and reply.json()["counted"] is False
    assert (await call("PUT", path, token, {"winner": "bothBad"})).status == 200
    assert (await call("DELETE", path, token)).status == 204


@pytest.mark.parametrize(
    ("path_turn", "body", "status", "words"),
    [
        ("0", {"winner": "Z"}, 422, "Unknown winner 'Z'; expected one of A, B, tie, bothBad"),
        ("1", {"winner": "A"}, 422, "Turn 1 does not exist"),
        ("0", {"winner": ""}, 422, None),
        ("0", {"winner": 3}, 422, None),
        ("0", {"winner": "A\x00"}, 422, None),
        ("0", {}, 422, None),
        ("x", {"winner": "A"}, 422, None),
    ],
)
async def test_bad_votes_are_named_422s(tokens, path_turn, body, status, words) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    reply = await call(
        "PUT", f"/sessions/{comparison.id}/votes/{path_turn}", tokens("user_alice"), body
    )
    assert reply.status == status, reply.text
    if words:
        assert words in reply.json()["message"]


async def test_flag_voids_the_vote_until_withdrawn(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    token = tokens("user_alice")
    base = f"/sessions/{comparison.id}"
    assert (await call("PUT", f"{base}/votes/0", token, {"winner": "A"})).json()["counted"]
    flagged = await call("PUT", f"{base}/flags/0/B", token)
    assert flagged.status == 200 and flagged.json() == {"turn": 0, "key": "B"}
    state = (await call("GET", f"{base}/arena", token)).json()
    assert state["flags"] == [{"turn": 0, "key": "B"}]
    assert state["votes"][0]["void"] is True and state["votes"][0]["counted"] is False
    board = (await call("GET", "/leaderboard", token)).json()
    assert board["votes"] == 0 and board["models"] == []
    assert (await call("PUT", f"{base}/flags/0/Q", token)).status == 422
    assert (await call("DELETE", f"{base}/flags/0/B", token)).status == 204
    assert (await call("DELETE", f"{base}/flags/0/B", token)).status == 404
    assert (await call("GET", "/leaderboard", token)).json()["votes"] == 1
    await call("POST", f"{base}/reveal", token)
    late = await call("PUT", f"{base}/flags/0/A", token)
    assert late.status == 409


async def test_another_users_comparison_is_404_everywhere(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    bob = tokens("user_bob")
    base = f"/sessions/{comparison.id}"
    requests = [
        ("GET", f"{base}/arena", None),
        ("PUT", f"{base}/votes/0", {"winner": "A"}),
        ("DELETE", f"{base}/votes/0", None),
        ("POST", f"{base}/reveal", None),
        ("PUT", f"{base}/flags/0/A", None),
        ("DELETE", f"{base}/flags/0/A", None),
        ("PUT", f"{base}/tags", {"tags": ["code"]}),
        ("POST", f"{base}/share", None),
        ("DELETE", f"{base}/share", None),
        ("GET", f"{base}/export", None),
        ("GET", f"/sessions/{comparison.id}", None),
    ]
    for method, path, body in requests:
        reply = await call(method, path, bob, body)
        assert reply.status == 404, (method, path, reply.status)
        assert reply.json()["statusCode"] == 404
        assert_no_identity(reply.text)
    alice = tokens("user_alice")
    for missing_id in ("0" * 24, "x" * 40, "a%00b"):
        for method, path, body in requests[:3]:
            missing = path.replace(comparison.id, missing_id)
            assert (await call(method, missing, alice, body)).status == 404, missing
    # Nothing changed for the owner.
    state = (await call("GET", f"{base}/arena", tokens("user_alice"))).json()
    assert state["votes"] == [] and state["revealed"] is False and state["share"] is None


async def test_arena_endpoints_need_a_token() -> None:
    for method, path in [("GET", "/leaderboard"), ("PUT", "/sessions/x/votes/0")]:
        reply = await call(method, path, None, {"winner": "A"} if method == "PUT" else None)
        assert reply.status == 401 and reply.json()["reason"]
