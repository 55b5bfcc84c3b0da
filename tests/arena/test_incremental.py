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
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from arena import selectors, services
from arena.errors import Conflict
from arena.models import Battle, DailyPairTally, PairTally, Vote
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


Key = tuple[str | None, str, date | None]  # user (None: everyone), tag ('' any), since-day


def add(tally: selectors.Tally, key: tuple[str, str, str], n: int, v: int) -> None:
    sums = tally.setdefault(key, [0, 0])
    sums[0] += n
    sums[1] += v


def ledger_tallies(days: list[date]) -> dict[Key, selectors.Tally]:
    """The raw ledger's sums for every scope x tag x since-day, added up here from two
    ``GROUP BY``s over the battles per user and UTC day (without and with each tag): what
    :func:`selectors.battle_tally` reads for one of them."""
    day = TruncDate("cast_at", tzinfo=UTC)
    sums = {"n": Sum("delta"), "v": Sum("votes")}
    rows = [
        ("", *row)
        for row in Battle.objects.values_list("user_id", day, "model_a", "model_b", "result")
        .annotate(**sums)
        .order_by()
    ]
    rows += (
        Battle.objects.filter(comparison__tags__name__in=TAGS[1:])
        .values_list("comparison__tags__name", "user_id", day, "model_a", "model_b", "result")
        .annotate(**sums)
        .order_by()
    )
    tallies: dict[Key, selectors.Tally] = {k: {} for k in board_keys(days)}
    for tag, user, cast_day, a, b, result, n, v in rows:
        for since in [None, *days]:
            if since is None or cast_day >= since:
                for scope_user in (None, user):
                    if (scope_user, tag, since) in tallies:
                        add(tallies[scope_user, tag, since], (a, b, result), n, v)
    return tallies


def kept_tallies(days: list[date]) -> dict[Key, selectors.Tally]:
    """The kept sums for every scope x tag x since-day, from one read of each sums table:
    all time as kept, a since-day's as the sum of its kept days."""
    users = {services.scope_key(user_id=user): user for user in USERS}
    tallies: dict[Key, selectors.Tally] = {k: {} for k in board_keys(days)}
    for scope, tag, a, b, result, n, v in PairTally.objects.values_list(
        "scope", "tag", "model_a", "model_b", "result", "battles", "votes"
    ):
        if scope in users and tag in TAGS:
            add(tallies[users[scope], tag, None], (a, b, result), n, v)
    for scope, tag, kept_day, a, b, result, n, v in DailyPairTally.objects.values_list(
        "scope", "tag", "day", "model_a", "model_b", "result", "battles", "votes"
    ):
        for since in days:
            if scope in users and tag in TAGS and kept_day >= since:
                add(tallies[users[scope], tag, since], (a, b, result), n, v)
    return tallies


def board_keys(days: list[date]) -> list[Key]:
    return [(user, tag, day) for user in USERS for tag in TAGS for day in [None, *days]]


#: Boards fitted from the raw sums, by scope, tag, since-day and those sums: a fit is a function
#: of them, and most of them stay the same from one change to the next.
expected_boards: dict[tuple[Key, tuple], dict] = {}


def check_boards(days: list[date], step: object) -> None:
    """Every scope x tag x since-day: kept sums == raw sums, served board == raw board."""
    raw_tallies = ledger_tallies(days)
    kept_tallies_ = kept_tallies(days)
    for key in board_keys(days):
        user, tag, day = key
        raw = nonzero(raw_tallies[key])
        assert nonzero(kept_tallies_[key]) == raw, (step, key)
        served = services.leaderboard_current(user_id=user, tag=tag, since=day)
        memo = (key, tuple(sorted((k, tuple(v)) for k, v in raw.items())))
        if memo not in expected_boards:
            expected_boards[memo] = without_time(
                services._board(user_id=user, tag=tag, since=day, tally=raw)
            )
        assert without_time(served) == expected_boards[memo], (step, key)


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
    raw_tallies = ledger_tallies(days)  # the sums added up here mean what battle_tally reads
    for user, tag, day in board_keys(days):
        since = day_start(day) if day else None
        assert nonzero(raw_tallies[user, tag, day]) == nonzero(
            selectors.battle_tally(user_id=user, tag=tag, since=since)
        )
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
