"""Leaderboard over REST (scopes, tags, since, caching by version), share links, exports, admin
and the ``arena_ratings`` command."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client as DjangoClient
from django.utils import timezone

from arena.models import Battle, Vote
from comparisons import services
from tests.arena.conftest import SLOTS, call, make_comparison
from tests.arena.test_blind_rest import assert_no_identity

pytestmark = [pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-haiku-4-5-20251001"
GEMINI = "gemini-2.5-flash"
GPT = "gpt-4.1-mini"


async def battle(
    token: str, user: str, winner_model: str | None, *, tags: tuple[str, ...] = ()
) -> str:
    """A blind battle of Claude vs Gemini voted for ``winner_model`` (None: a tie)."""
    comparison = await sync_to_async(make_comparison)(user_id=user)
    rows = await sync_to_async(lambda: list(comparison.responses.all()))()
    keys = {r.model_name: r.key for r in rows}
    winner = keys[winner_model] if winner_model else "tie"
    reply = await call("PUT", f"/sessions/{comparison.id}/votes/0", token, {"winner": winner})
    assert reply.status == 200, reply.text
    if tags:
        assert (
            await call("PUT", f"/sessions/{comparison.id}/tags", token, {"tags": list(tags)})
        ).status == 200
    return comparison.id


async def test_leaderboard_ranks_my_blind_votes_and_updates_after_each(tokens) -> None:
    alice, bob = tokens("user_alice"), tokens("user_bob")
    for _ in range(3):
        await battle(alice, "user_alice", CLAUDE, tags=("Code ",))
    await battle(alice, "user_alice", None)
    board = await call("GET", "/leaderboard", alice)
    assert board.status == 200, board.text
    body = board.json()
    assert body["scope"] == "me" and body["votes"] == 4 and body["battles"] == 4
    top, second = body["models"]
    assert (top["model"], top["provider"], top["rank"]) == (CLAUDE, "anthropic", 1)
    assert (top["wins"], top["losses"], top["ties"], top["battles"]) == (3, 0, 1, 4)
    assert top["winRate"] == 0.75
    assert top["lower"] <= top["rating"] <= top["upper"] and top["rating"] > second["rating"]

    # Bob's votes move the team board, not Alice's own.
    for _ in range(6):
        await battle(bob, "user_bob", GEMINI)
    mine = (await call("GET", "/leaderboard", alice, query="scope=me")).json()
    assert mine["votes"] == 4 and mine["models"][0]["model"] == CLAUDE
    team = (await call("GET", "/leaderboard", alice, query="scope=all")).json()
    assert team["votes"] == 10 and team["models"][0]["model"] == GEMINI

    # Tags re-rank by topic (normalised: "Code " is "code").
    coding = (await call("GET", "/leaderboard", alice, query="scope=all&tag=CODE")).json()
    assert coding["tag"] == "code" and coding["votes"] == 3
    assert coding["models"][0]["model"] == CLAUDE
    future = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    later = (await call("GET", "/leaderboard", alice, query=f"scope=all&since={future}")).json()
    assert later["votes"] == 0 and later["models"] == []
    # since= counts whole UTC days: a date, or a date-time rounded down to its UTC day's start.
    today = timezone.now().astimezone(UTC)
    for since in (today.strftime("%Y-%m-%d"), today.strftime("%Y-%m-%dT23:59:59")):
        board = (await call("GET", "/leaderboard", alice, query=f"scope=all&since={since}")).json()
        assert board["votes"] == 10, since
        assert board["since"] == today.strftime("%Y-%m-%dT00:00:00+00:00")
    # 01:00 at UTC+14 is still the previous UTC day: today's votes count.
    tomorrow_early = (today + timedelta(days=1)).strftime("%Y-%m-%dT01:00:00%%2B14:00")
    board = await call("GET", "/leaderboard", alice, query=f"scope=all&since={tomorrow_early}")
    assert board.json()["votes"] == 10


async def test_a_vote_over_three_models_counts_against_each_other_one(tokens) -> None:
    alice = tokens("user_alice")
    three = [*SLOTS, services.SlotSpec("openai", GPT)]
    comparison = await sync_to_async(make_comparison)(user_id="user_alice", slots=three)
    gpt_key = await sync_to_async(lambda: comparison.responses.get(model_name=GPT).key)()
    await call("PUT", f"/sessions/{comparison.id}/votes/0", alice, {"winner": gpt_key})
    body = (await call("GET", "/leaderboard", alice)).json()
    assert body["battles"] == 2
    assert body["models"][0]["model"] == GPT and body["models"][0]["wins"] == 2
    changed = await call("PUT", f"/sessions/{comparison.id}/votes/0", alice, {"winner": "bothBad"})
    assert changed.status == 200
    body = (await call("GET", "/leaderboard", alice)).json()
    assert body["battles"] == 3 and all(m["ties"] == 2 for m in body["models"])
    # The ledger keeps the first verdict, cancelled: two "b"/"a" rows and their -1 copies.
    rows = await sync_to_async(
        lambda: sorted(Battle.objects.values_list("result", "delta", "withdrawn"))
    )()
    assert [r for r in rows if r[0] == "bothBad"] == [("bothBad", 1, False)] * 3
    assert sum(delta for result, delta, _ in rows if result != "bothBad") == 0


async def test_stored_board_is_served_until_a_vote_changes_it(tokens) -> None:
    alice = tokens("user_alice")
    await battle(alice, "user_alice", CLAUDE)
    first = (await call("GET", "/leaderboard", alice)).json()
    again = (await call("GET", "/leaderboard", alice)).json()
    assert again["computedAt"] == first["computedAt"]  # served from the stored board
    await battle(alice, "user_alice", GEMINI)
    after = (await call("GET", "/leaderboard", alice)).json()
    assert after["votes"] == 2 and after["computedAt"] != first["computedAt"]


@pytest.mark.parametrize(
    "query",
    ["scope=everyone", "since=yesterday", "tag=" + "x" * 41, "tag=%20%20", "tag=a%00b"],
)
async def test_bad_leaderboard_queries_are_422(tokens, query) -> None:
    reply = await call("GET", "/leaderboard", tokens("user_alice"), query=query)
    assert reply.status == 422, reply.text


async def test_bad_tags_are_422(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    path = f"/sessions/{comparison.id}/tags"
    token = tokens("user_alice")
    assert (await call("PUT", path, token, {"tags": [" "]})).status == 422
    assert (await call("PUT", path, token, {"tags": [f"t{n}" for n in range(11)]})).status == 422
    ok = await call("PUT", path, token, {"tags": ["Math", "math", " long   topic "]})
    assert ok.json() == {"tags": ["long topic", "math"]}


async def test_share_link_read_only_reveal_state_and_revoke(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(user_id="user_alice")
    alice = tokens("user_alice")
    created = await call("POST", f"/sessions/{comparison.id}/share", alice)
    assert created.status == 201 and created.headers["cache-control"] == "no-store"
    link = created.json()
    assert len(link["token"]) >= 40 and link["url"].endswith(f"/shared/{link['token']}")

    shared = await call("GET", f"/shared/{link['token']}")  # no sign-in
    assert shared.status == 200
    assert_no_identity(shared.text)
    body = shared.json()
    assert body["id"] == comparison.id and body["revealed"] is False and "userId" not in body
    assert shared.headers["referrer-policy"] == "no-referrer"
    # Read-only: the link gives no way to vote (the vote API needs the owner's token).
    assert (
        await call("PUT", f"/sessions/{comparison.id}/votes/0", None, {"winner": "A"})
    ).status == 401

    await call("PUT", f"/sessions/{comparison.id}/votes/0", alice, {"winner": "A", "reveal": True})
    body = (await call("GET", f"/shared/{link['token']}")).json()
    assert body["revealed"] is True and body["votes"][0]["winner"] == "A"
    assert {m["provider"] for m in body["models"]} == {"anthropic", "google"}

    state = (await call("GET", f"/sessions/{comparison.id}/arena", alice)).json()
    assert state["share"] is not None
    replaced = (await call("POST", f"/sessions/{comparison.id}/share", alice)).json()
    assert (await call("GET", f"/shared/{link['token']}")).status == 404
    assert (await call("GET", f"/shared/{replaced['token']}")).status == 200
    assert (await call("DELETE", f"/sessions/{comparison.id}/share", alice)).status == 204
    gone = await call("GET", f"/shared/{replaced['token']}")
    assert gone.status == 404 and gone.json()["statusCode"] == 404
    for token in ("x", "y" * 200, "%00"):
        assert (await call("GET", f"/shared/{token}")).status == 404


async def test_exports_hide_models_until_revealed_and_escape_formulas(tokens) -> None:
    comparison = await sync_to_async(make_comparison)(
        user_id="user_alice",
        contents=['=HYPERLINK("http://evil")', 'plain, with "quotes"\n2 lines'],
    )
    alice = tokens("user_alice")
    path = f"/sessions/{comparison.id}/export"
    for fmt in ("json", "md", "csv"):
        reply = await call("GET", path, alice, query=f"format={fmt}")
        assert reply.status == 200, reply.text
        assert (
            f'filename="comparison-{comparison.id}.{fmt}"' in reply.headers["content-disposition"]
        )
        assert_no_identity(reply.text)
    rows = list(
        csv.DictReader(io.StringIO((await call("GET", path, alice, query="format=csv")).text))
    )
    assert [r["key"] for r in rows] == ["A", "B"]
    assert rows[0]["content"] == '\'=HYPERLINK("http://evil")'
    assert rows[1]["content"] == 'plain, with "quotes"\n2 lines'
    assert (await call("GET", path, alice, query="format=pdf")).status == 422

    await call("PUT", f"/sessions/{comparison.id}/votes/0", alice, {"winner": "B", "reveal": True})
    document = json.loads((await call("GET", path, alice)).text)
    assert document["revealed"] is True and document["votes"][0]["winner"] == "B"
    assert document["userId"] == "user_alice"
    markdown = (await call("GET", path, alice, query="format=md")).text
    assert "# Comparison" in markdown and "Vote (turn 0): B" in markdown
    assert "anthropic:claude-haiku-4-5-20251001" in markdown
    rows = list(
        csv.DictReader(io.StringIO((await call("GET", path, alice, query="format=csv")).text))
    )
    assert {r["provider"] for r in rows} == {"anthropic", "google"} and rows[0]["vote"] == "B"


def test_admin_searches_votes_and_shares_and_command_refits(db) -> None:
    from arena import services as arena

    comparison = make_comparison(user_id="user_admin", prompt="Sort a linked list")
    arena.vote_cast(user_id="user_admin", comparison_id=comparison.id, winner="A")
    arena.share_create(user_id="user_admin", comparison_id=comparison.id)
    staff = get_user_model().objects.create_user(
        "staff", password="pw-123456!", is_staff=True, is_superuser=True
    )
    client = DjangoClient()
    client.force_login(staff)
    for path in ("/admin/arena/vote/", "/admin/arena/share/"):
        found = client.get(path, {"q": "linked list"})
        assert found.status_code == 200 and comparison.id in found.content.decode()
        missing = client.get(path, {"q": "nothing like it"})
        assert comparison.id not in missing.content.decode()
    vote = Vote.objects.get()
    assert client.get(f"/admin/arena/vote/{vote.pk}/change/").status_code == 200

    out = io.StringIO()
    call_command("arena_ratings", "--rebuild", stdout=out)
    text = out.getvalue()
    assert "Rebuilt 1 battles" in text and "1 votes, 1 battles" in text
    assert "anthropic:claude-haiku" in text or "google:gemini" in text
    out = io.StringIO()
    call_command("arena_ratings", "--prune-days", "0", stdout=out)
    assert "Dropped 1 stored leaderboard(s)." in out.getvalue()
