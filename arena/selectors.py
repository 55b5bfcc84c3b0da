"""Read side of the arena (HackSoft style: ``<entity>_<action>``, keyword-only, synchronous)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import connection
from django.db.models import Max, Min, Prefetch, Sum

from arena.errors import NotFound
from arena.models import (
    Battle,
    Counter,
    DailyPairTally,
    Leaderboard,
    PairTally,
    SelfNamedFlag,
    Share,
    Tag,
    Vote,
)
from arena.ratings import PairCount
from comparisons.models import Comparison, ModelResponse
from comparisons.selectors import comparison_get

SHARE_TOKEN_MAX_LENGTH = 100


def possible_id(comparison_id: str) -> bool:
    """Whether a comparison could have this id (PostgreSQL refuses NUL instead of not finding)."""
    return 0 < len(comparison_id) <= Comparison.ID_MAX_LENGTH and "\x00" not in comparison_id


def comparison_turn_count(*, comparison: Comparison) -> int:
    """How many turns the comparison has (the first prompt and its follow-ups)."""
    return 1 + len(comparison.turns.all())


def comparison_owned(*, user_id: str, comparison_id: str) -> Comparison:
    """The caller's comparison with its responses; NotFound for a missing or foreign one."""
    comparison = comparison_get(user_id=user_id, comparison_id=comparison_id)
    if comparison is None:
        raise NotFound(f"Session {comparison_id} not found")
    return comparison


@dataclass(frozen=True, slots=True)
class ArenaState:
    comparison: Comparison
    votes: list[Vote]
    flags: list[SelfNamedFlag]
    tags: list[str]
    share: Share | None


def arena_state_get(*, user_id: str, comparison_id: str) -> ArenaState:
    """Blind/reveal state, the caller's votes, flags, tags and active share of a comparison."""
    comparison = comparison_owned(user_id=user_id, comparison_id=comparison_id)
    return ArenaState(
        comparison=comparison,
        votes=list(Vote.objects.filter(comparison=comparison, user_id=user_id)),
        flags=list(SelfNamedFlag.objects.filter(comparison=comparison)),
        tags=list(Tag.objects.filter(comparison=comparison).values_list("name", flat=True)),
        share=Share.objects.filter(comparison=comparison, revoked_at__isnull=True).first(),
    )


def shared_comparison_get(*, token: str) -> Comparison | None:
    """The comparison an active share token points at; None for an unknown or revoked token."""
    from arena.services import share_token_digest

    if not 0 < len(token) <= SHARE_TOKEN_MAX_LENGTH or not token.isascii():
        return None
    share = (
        Share.objects.filter(token_digest=share_token_digest(token=token), revoked_at__isnull=True)
        .select_related("comparison")
        .prefetch_related(
            Prefetch("comparison__responses", queryset=ModelResponse.objects.order_by("position"))
        )
        .first()
    )
    return share.comparison if share is not None else None


def comparison_votes(*, comparison: Comparison) -> list[Vote]:
    """Every vote on a comparison (its owner's), by turn."""
    return list(Vote.objects.filter(comparison=comparison).order_by("turn", "user_id"))


def leaderboard_cached(
    *, user_id: str | None, tag: str = "", since: date | None = None
) -> dict[str, Any] | None:
    """The stored board if nothing that moves it changed since it was fitted; else None.
    ``since``: the board's UTC since-day."""
    from arena.services import scope_key, tags_key

    scope = scope_key(user_id=user_id)
    # One statement, the counters' current versions as scalar subqueries: one round trip, the
    # three rows read from one snapshot. Written out: the ORM's build of the same query cost
    # ~1.9 ms of CPU per call on a slow core, the answer of GET /leaderboard for a stored board.
    board, counter = (connection.ops.quote_name(m._meta.db_table) for m in (Leaderboard, Counter))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT b.version, b.tags_version, b.result,"
            f" COALESCE((SELECT c.version FROM {counter} c WHERE c.key = %s), 0),"
            f" COALESCE((SELECT c.version FROM {counter} c WHERE c.key = %s), 0)"
            f" FROM {board} b WHERE b.scope = %s AND b.tag = %s AND b.since = %s",
            [scope, tags_key(scope=scope), scope, tag, since.isoformat() if since else ""],
        )
        row = cursor.fetchone()
    if row is None or row[0] != row[3]:
        return None
    if tag and row[1] != row[4]:
        return None
    result = row[2]
    board_json: dict[str, Any] = json.loads(result) if isinstance(result, str) else result
    return board_json


def counter_versions(*, keys: list[str]) -> list[int]:
    """The current versions of these counters (0 for one never bumped), in one query."""
    found = dict(Counter.objects.filter(pk__in=keys).values_list("key", "version"))
    return [found.get(key, 0) for key in keys]


#: Ledger sums per ``(model_a, model_b, result)``: ``[battles, votes]``.
Tally = dict[tuple[str, str, str], list[int]]


def battle_tally(*, user_id: str | None, tag: str = "", since: datetime | None = None) -> Tally:
    """Sums of the whole ledger in a board's scope, tag and period: one ``GROUP BY`` over the
    matching battles (the kept sums of :func:`pair_tally` are checked against it)."""
    battles = Battle.objects.all()
    if user_id is not None:
        battles = battles.filter(user_id=user_id)
    if since is not None:
        battles = battles.filter(cast_at__gte=since)
    if tag:
        battles = battles.filter(comparison__tags__name=tag)
    rows = (
        battles.values_list("model_a", "model_b", "result")
        .annotate(n=Sum("delta"), v=Sum("votes"))
        .order_by()
    )
    return {(a, b, result): [n, v] for a, b, result, n, v in rows}


def pair_tally(*, scope: str, tag: str = "", since: date | None = None) -> Tally:
    """The kept sums of a scope (``*`` or ``u:<user id>``) and tag (``''``: any): all time, or
    over the UTC days from ``since`` on. For a since-day in the older half of the kept days, the
    all-time sums minus the days before it: fewer daily rows to add up."""
    every = PairTally.objects.filter(scope=scope, tag=tag).values_list(
        "model_a", "model_b", "result", "battles", "votes"
    )
    if since is None:
        return {(a, b, result): [n, v] for a, b, result, n, v in every}
    days = DailyPairTally.objects.filter(scope=scope, tag=tag)
    # Both ends in one query (each still an index probe: PostgreSQL plans MIN and MAX over the
    # key's (scope, tag, day) prefix as LIMIT 1 scans).
    bounds = days.aggregate(first=Min("day"), last=Max("day"))
    first, last = bounds["first"], bounds["last"]
    if first is None or last is None or since > last:
        return {}
    tally: Tally = {}
    sign = 1
    daily = days.filter(day__gte=since)
    if since - first < last - since:
        tally = {(a, b, result): [n, v] for a, b, result, n, v in every}
        sign = -1
        daily = days.filter(day__lt=since)
    rows = (
        daily.values_list("model_a", "model_b", "result")
        .annotate(n=Sum("battles"), v=Sum("votes"))
        .order_by()
    )
    for a, b, result, n, v in rows:
        sums = tally.setdefault((a, b, result), [0, 0])
        sums[0] += sign * n
        sums[1] += sign * v
    return tally


_RESULT_COLUMN: dict[str, int] = {Battle.Result.A: 0, Battle.Result.B: 1}  # ties: 2


def tally_pairs(*, tally: Tally) -> tuple[list[PairCount], int]:
    """Per-pair outcome counts for the fit, and how many votes they come from."""
    pairs: dict[tuple[str, str], list[int]] = {}
    votes = 0
    for (a, b, result), (n, v) in tally.items():
        counts = pairs.setdefault((a, b), [0, 0, 0])
        counts[_RESULT_COLUMN.get(result, 2)] += n
        votes += v
    return [PairCount(a, b, *counts) for (a, b), counts in sorted(pairs.items())], votes
