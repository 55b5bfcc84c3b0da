"""The stored boards, caught up from the ledger, equal a fit from scratch after every change."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from arena import selectors, services
from arena.errors import Conflict
from arena.models import Leaderboard
from comparisons import services as comparison_services
from tests.arena.conftest import SLOTS, make_comparison

pytestmark = [pytest.mark.django_db]

THREE = [*SLOTS, comparison_services.SlotSpec("openai", "gpt-4.1-mini")]


def boards(since) -> list[dict]:
    return [
        services.leaderboard_current(user_id=user, tag=tag, since=when)
        for user in (None, "user_a")
        for tag in ("", "code")
        for when in (None, since)
    ]


def without_time(board: dict) -> dict:
    return {k: v for k, v in board.items() if k != "computedAt"}


# ~2,000 board reads and fits, each a few queries: about 50 s on the busy 2-core machine.
@pytest.mark.timeout(120)
def test_incremental_boards_match_a_full_refit_after_every_change() -> None:
    rng = random.Random(5)
    since = timezone.now() - timedelta(hours=1)
    comparisons = [
        make_comparison(user_id=user, slots=rng.choice([SLOTS, THREE]))
        for user in ("user_a", "user_b")
        for _ in range(4)
    ]
    boards(since)  # stored boards exist from the start: every later one is caught up
    for step in range(60):
        comparison = rng.choice(comparisons)
        keys = [r.key for r in comparison.responses.all()]
        action = rng.choice(["vote", "vote", "vote", "undo", "flag", "unflag", "tag"])
        kwargs: dict[str, Any] = {"user_id": comparison.user_id, "comparison_id": comparison.id}
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
        for user in (None, "user_a", "user_b"):  # the kept sums are the ledger's
            scope = services.scope_key(user_id=user)
            ledger = selectors.battle_tally(user_id=user, upto=selectors.ledger_mark())
            kept = selectors.pair_tally(scope=scope)
            assert {k: v for k, v in kept.items() if any(v)} == {
                k: v for k, v in ledger.items() if any(v)
            }, (step, scope)
        caught_up = boards(since)
        Leaderboard.objects.all().delete()
        fresh = boards(since)
        assert [without_time(b) for b in caught_up] == [without_time(b) for b in fresh], step
    assert any(b["votes"] for b in fresh)
    kept = selectors.pair_tally(scope="*")
    services.pair_tallies_rebuild()
    assert selectors.pair_tally(scope="*") == {k: v for k, v in kept.items() if any(v)}
