"""The kept pair sums (per scope, tag and UTC day) equal the ledger's, and every board fitted
from them equals the board fitted from the raw battles, after every vote, change, undo, flag
and tag edit, and after a rebuild."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from arena import selectors, services
from arena.errors import Conflict
from arena.models import Battle, Vote
from comparisons import services as comparison_services
from tests.arena.conftest import SLOTS, make_comparison

pytestmark = [pytest.mark.django_db]

THREE = [*SLOTS, comparison_services.SlotSpec("openai", "gpt-4.1-mini")]
USERS = (None, "user_a", "user_b")
TAGS = ("", "code", "math")


def without_time(board: dict) -> dict:
    return {k: v for k, v in board.items() if k != "computedAt"}


def nonzero(tally: selectors.Tally) -> selectors.Tally:
    return {k: v for k, v in tally.items() if any(v)}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def check_boards(days: list[date], step: object) -> None:
    """Every scope x tag x since-day: kept sums == raw GROUP BY, served board == raw board."""
    for user in USERS:
        scope = services.scope_key(user_id=user)
        for tag in TAGS:
            for day in [None, *days]:
                raw = selectors.battle_tally(
                    user_id=user, tag=tag, since=day_start(day) if day else None
                )
                kept = selectors.pair_tally(scope=scope, tag=tag, since=day)
                assert nonzero(kept) == nonzero(raw), (step, scope, tag, day)
                served = services.leaderboard_current(user_id=user, tag=tag, since=day)
                expected = services._board(user_id=user, tag=tag, since=day, tally=nonzero(raw))
                assert without_time(served) == without_time(expected), (step, scope, tag, day)


def backdate(rng: random.Random, days: int) -> None:
    """Spread the ledger over the last ``days`` UTC days (as months of voting would), then
    recount the kept sums as ``arena_ratings --rebuild`` does."""
    now = timezone.now()
    for vote in Vote.objects.all():
        when = now - timedelta(days=rng.randrange(days), seconds=rng.randrange(86400))
        Vote.objects.filter(pk=vote.pk).update(updated_at=when)  # what a rebuild reads
        Battle.objects.filter(vote=vote).update(cast_at=when)
    services.pair_tallies_rebuild()


# 45 steps x 3 scopes x 3 tags x 4 periods of sums and board reads: about a minute when busy.
@pytest.mark.timeout(240)
def test_kept_sums_and_boards_match_the_raw_battles_after_every_change() -> None:
    rng = random.Random(5)
    comparisons = [
        make_comparison(user_id=user, slots=rng.choice([SLOTS, THREE]))
        for user in ("user_a", "user_b")
        for _ in range(4)
    ]
    for n, comparison in enumerate(comparisons):  # history on earlier days, tags on some
        keys = [r.key for r in comparison.responses.all()]
        kwargs: dict[str, Any] = {"user_id": comparison.user_id, "comparison_id": comparison.id}
        services.vote_cast(**kwargs, winner=rng.choice([*keys, "tie"]))
        if n % 2:
            services.tags_set(**kwargs, tags=["code"])
    backdate(rng, days=5)
    today = timezone.now().astimezone(UTC).date()
    days = [today - timedelta(days=3), today - timedelta(days=1), today]
    check_boards(days, "rebuilt")
    for step in range(45):
        comparison = rng.choice(comparisons)
        keys = [r.key for r in comparison.responses.all()]
        action = rng.choice(["vote", "vote", "vote", "undo", "flag", "unflag", "tag"])
        kwargs = {"user_id": comparison.user_id, "comparison_id": comparison.id}
        try:
            if action == "vote":
                services.vote_cast(**kwargs, winner=rng.choice([*keys, "tie", "bothBad"]))
            elif action == "undo":
                services.vote_retract(**kwargs)
            elif action == "flag":
                services.flag_set(**kwargs, key=rng.choice(keys))
            elif action == "unflag":
                services.flag_clear(**kwargs, key=rng.choice(keys))
            else:
                services.tags_set(**kwargs, tags=rng.sample(["code", "math", "prose"], 2))
        except (Conflict, services.NotFound):
            pass
        check_boards(days, (step, action))
    assert services.leaderboard_current(user_id=None)["votes"]
    for day in days:  # undone and changed votes leave their earlier days' sums
        assert services.leaderboard_current(user_id=None, since=day)["votes"]
    kept = {
        (user, tag, day): nonzero(
            selectors.pair_tally(scope=services.scope_key(user_id=user), tag=tag, since=day)
        )
        for user in USERS
        for tag in TAGS
        for day in [None, *days]
    }
    # The command recreates the battles from the votes (each counted on the day it was last
    # cast) and recounts the sums, then refits every stored board (since-day ones included).
    call_command("arena_ratings", "--rebuild", stdout=io.StringIO())
    assert {
        key: nonzero(
            selectors.pair_tally(scope=services.scope_key(user_id=key[0]), tag=key[1], since=key[2])
        )
        for key in kept
    } == kept
    check_boards(days, "arena_ratings --rebuild")
