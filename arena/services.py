"""Write side of the arena (HackSoft style: ``<entity>_<action>``, keyword-only, synchronous).

Only the owner of a comparison may vote on it, reveal it, flag it, tag it or share it; for anyone
else it does not exist (:class:`~arena.errors.NotFound`, a 404, never a 403).

Counting rules (docs/protocol.md, "Leaderboard"):

- Only *blind* votes count: cast while the models were hidden. Once revealed, a blind vote is
  locked (it cannot be changed or undone: the voter now knows who is who); a vote cast with the
  names in view can be changed at will but never counts.
- A vote for key X over N models counts as X beating each of the N-1 others; ``tie`` and
  ``bothBad`` count as a tie between every pair (``bothBad`` is kept apart in the battle rows, and
  rated as a tie, as FastChat does). Two slots running the same model are never a battle.
- A turn with an answer flagged as naming its own model counts no vote (the vote is kept, void).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import combinations
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from arena import selectors
from arena.errors import Conflict, Invalid, NotFound
from arena.models import (
    Battle,
    Counter,
    DailyPairTally,
    Leaderboard,
    Outcome,
    PairTally,
    SelfNamedFlag,
    Share,
    Tag,
    Vote,
)
from arena.ratings import ratings_fit
from comparisons.models import Comparison

ALL = "*"
MAX_TAGS = 10


def scope_key(*, user_id: str | None) -> str:
    """The counter / cache key of a board: ``*`` for everyone's votes, ``u:<id>`` for one user."""
    return ALL if user_id is None else f"u:{user_id}"


def _owned_for_update(*, user_id: str, comparison_id: str) -> Comparison:
    """The caller's comparison, row-locked for this transaction; else NotFound."""
    if not selectors.possible_id(comparison_id):
        raise NotFound(f"Session {comparison_id} not found")
    comparison = (
        Comparison.objects.select_for_update()
        .filter(pk=comparison_id, user_id=user_id)
        .prefetch_related("responses")
        .first()
    )
    if comparison is None:
        raise NotFound(f"Session {comparison_id} not found")
    return comparison


def _check_turn(comparison: Comparison, turn: int) -> None:
    turns = selectors.comparison_turn_count(comparison=comparison)
    if not 0 <= turn < turns:
        raise Invalid(f"Turn {turn} does not exist; this comparison has {turns} turn(s) from 0")


def _keys(comparison: Comparison) -> list[str]:
    return [row.key for row in comparison.responses.all()]


def _check_key(comparison: Comparison, key: str) -> None:
    keys = _keys(comparison)
    if key not in keys:
        raise Invalid(f"Unknown key '{key}'; this comparison's keys are {', '.join(keys)}")


def tags_key(*, scope: str) -> str:
    """The counter of tag changes that can move a board's tag views."""
    return f"t:{scope}"


def _bump(keys: list[str]) -> None:
    Counter.objects.bulk_create([Counter(key=key) for key in keys], ignore_conflicts=True)
    for key in keys:  # one at a time, in a fixed order: no lock-order deadlock
        Counter.objects.filter(pk=key).update(version=F("version") + 1)


def _counters_bump(*, user_id: str) -> None:
    """Every board this user's votes are on is now stale (theirs and the team's).

    Called *before* writing ledger rows: the team counter's row lock, held to the commit,
    serialises the writers of the ledger and its kept sums.
    """
    _bump([ALL, scope_key(user_id=user_id)])


def _battles(vote: Vote, comparison: Comparison) -> list[Battle]:
    """The pairwise results a counted vote stands for (none for an uncounted one)."""
    if not vote.counted:
        return []
    models: dict[str, str] = vote.slot_models
    result: list[Battle] = []
    tie = Battle.Result.BOTH_BAD if vote.winner == Outcome.BOTH_BAD else Battle.Result.TIE
    if vote.winner in models:
        pairs = [(vote.winner, other) for other in models if other != vote.winner]
    else:
        pairs = list(combinations(models, 2))
    for first, second in pairs:
        one, two = models[first], models[second]
        if one == two:
            continue
        if vote.winner in models:
            outcome = Battle.Result.A if one < two else Battle.Result.B
        else:
            outcome = tie
        a, b = sorted((one, two))
        result.append(
            Battle(
                vote=vote,
                comparison=comparison,
                user_id=vote.user_id,
                cast_at=vote.updated_at,
                model_a=a,
                model_b=b,
                result=outcome,
                votes=0 if result else 1,  # the vote itself is counted on its first battle
            )
        )
    return result


#: A kept sum's key: ``(scope, tag, UTC day or None for all time, model_a, model_b, result)``.
TallyKey = tuple[str, str, date | None, str, str, str]
#: A ledger row as the sums see it: ``(user_id, cast_at, model_a, model_b, result, delta, votes)``.
LedgerRow = tuple[str, datetime, str, str, str, int, int]


def battle_day(*, cast_at: datetime) -> date:
    """The day a battle counts on: the UTC date of its ``cast_at`` (``since`` boards)."""
    return cast_at.astimezone(UTC).date()


def _tally_sums(
    rows: Iterable[LedgerRow], *, tags: Iterable[str], sign: int = 1
) -> dict[TallyKey, list[int]]:
    """The kept sums ``rows`` add to (``sign = -1``: take away), in every scope, tag of
    ``tags`` (``''`` = any) and period (all time and the row's day) they count in."""
    tags = list(tags)
    sums: dict[TallyKey, list[int]] = {}
    for user_id, cast_at, a, b, result, delta, votes in rows:
        day = battle_day(cast_at=cast_at)
        for scope in (ALL, scope_key(user_id=user_id)):
            for tag in tags:
                for period in (None, day):
                    total = sums.setdefault((scope, tag, period, a, b, result), [0, 0])
                    total[0] += sign * delta
                    total[1] += sign * votes
    return sums


def _ledger_rows(battles: Iterable[Battle]) -> list[LedgerRow]:
    return [
        (row.user_id, row.cast_at, row.model_a, row.model_b, row.result, row.delta, row.votes)
        for row in battles
    ]


def _tallies_upsert(sums: dict[TallyKey, list[int]]) -> None:
    """Add ``sums`` to the kept ones: one upsert per table, rows in a fixed order (no
    lock-order deadlock between writers)."""
    kept = {key: total for key, total in sums.items() if total[0] or total[1]}
    for model, daily in ((PairTally, False), (DailyPairTally, True)):
        rows = sorted((key, total) for key, total in kept.items() if (key[2] is not None) == daily)
        if not rows:
            continue
        table = connection.ops.quote_name(model._meta.db_table)
        columns = ["scope", "tag", *(["day"] if daily else []), "model_a", "model_b", "result"]
        values = ", ".join([f"({', '.join(['%s'] * (len(columns) + 2))})"] * len(rows))
        params: list[Any] = []
        for (scope, tag, day, a, b, result), (battle_sum, vote_sum) in rows:
            params.extend([scope, tag, *([day] if daily else []), a, b, result])
            params.extend([battle_sum, vote_sum])
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}, battles, votes) VALUES {values} "
                f"ON CONFLICT ({', '.join(columns)}) DO UPDATE SET "
                f"battles = {table}.battles + EXCLUDED.battles, "
                f"votes = {table}.votes + EXCLUDED.votes",
                params,
            )


def pair_tallies_add(*, battles: Sequence[Battle], tags: Iterable[str]) -> None:
    """Add new ledger rows (of a comparison with these ``tags``) to the kept sums
    (:class:`~arena.models.PairTally`, :class:`~arena.models.DailyPairTally`), in the
    transaction that writes them."""
    _tallies_upsert(_tally_sums(_ledger_rows(battles), tags=["", *tags]))


def _tallies_retag(comparison: Comparison, *, added: set[str], removed: set[str]) -> None:
    """Move the comparison's battles into the sums of its new tags and out of its old ones."""
    Counter.objects.bulk_create([Counter(key=ALL)], ignore_conflicts=True)
    # The team counter's row lock, which every ledger writer holds: tally writers one at a time.
    Counter.objects.select_for_update().filter(pk=ALL).first()
    rows: list[LedgerRow] = list(
        Battle.objects.filter(comparison=comparison).values_list(
            "user_id", "cast_at", "model_a", "model_b", "result", "delta", "votes"
        )
    )
    if not rows:
        return
    sums = _tally_sums(rows, tags=sorted(added))
    for key, (n, v) in _tally_sums(rows, tags=sorted(removed), sign=-1).items():
        total = sums.setdefault(key, [0, 0])
        total[0] += n
        total[1] += v
    _tallies_upsert(sums)


def pair_tallies_rebuild() -> None:
    """Recount the kept sums from the whole ledger (after a rebuild or a bulk load)."""
    PairTally.objects.all().delete()
    DailyPairTally.objects.all().delete()
    per_day = Battle.objects.annotate(day=TruncDate("cast_at", tzinfo=UTC))
    grouped = ("user_id", "day", "model_a", "model_b", "result")
    untagged = per_day.values_list(*grouped).annotate(n=Sum("delta"), v=Sum("votes")).order_by()
    tagged = (
        per_day.filter(comparison__tags__isnull=False)
        .values_list("comparison__tags__name", *grouped)
        .annotate(n=Sum("delta"), v=Sum("votes"))
        .order_by()
    )
    sums: dict[TallyKey, list[int]] = {}
    rows = [("", *row) for row in untagged] + list(tagged)
    for tag, user_id, day, a, b, result, n, v in rows:
        for scope in (ALL, scope_key(user_id=user_id)):
            for period in (None, day):
                total = sums.setdefault((scope, tag, period, a, b, result), [0, 0])
                total[0] += n
                total[1] += v
    kept = [(key, total) for key, total in sums.items() if total[0] or total[1]]
    PairTally.objects.bulk_create(
        [
            PairTally(scope=scope, tag=tag, model_a=a, model_b=b, result=r, battles=n, votes=v)
            for (scope, tag, day, a, b, r), (n, v) in kept
            if day is None
        ],
        batch_size=1000,
    )
    DailyPairTally.objects.bulk_create(
        [
            DailyPairTally(
                scope=scope, tag=tag, day=day, model_a=a, model_b=b, result=r, battles=n, votes=v
            )
            for (scope, tag, day, a, b, r), (n, v) in kept
            if day is not None
        ],
        batch_size=1000,
    )


def _ledger_withdraw(vote: Vote) -> list[Battle]:
    """Cancel the vote's live ledger rows with ``-1`` copies (same pair, result, time)."""
    live = list(Battle.objects.filter(vote=vote, delta=1, withdrawn=False))
    if not live:
        return []
    written = Battle.objects.bulk_create(
        [
            Battle(
                vote=vote,
                comparison_id=row.comparison_id,
                user_id=row.user_id,
                cast_at=row.cast_at,
                model_a=row.model_a,
                model_b=row.model_b,
                result=row.result,
                delta=-1,
                votes=-row.votes,
                withdrawn=True,
            )
            for row in live
        ]
    )
    Battle.objects.filter(pk__in=[row.pk for row in live]).update(withdrawn=True)
    return written


def _tag_names(comparison: Comparison) -> list[str]:
    return list(Tag.objects.filter(comparison=comparison).values_list("name", flat=True))


def _ledger_replace(vote: Vote, comparison: Comparison) -> None:
    """Withdraw the vote's rows and write its current ones; the kept sums in one upsert."""
    written = _ledger_withdraw(vote) + Battle.objects.bulk_create(_battles(vote, comparison))
    if written:
        pair_tallies_add(battles=written, tags=_tag_names(comparison))


@transaction.atomic
def vote_cast(
    *, user_id: str, comparison_id: str, winner: str, turn: int = 0, reveal: bool = False
) -> Vote:
    """Record (or change) the caller's vote on one turn: a slot key, ``tie`` or ``bothBad``.

    ``reveal`` also reveals a blind comparison's models (after recording the vote, so it counts).
    Raises NotFound, Invalid (turn, winner), Conflict (a blind vote after the reveal).
    """
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    _check_turn(comparison, turn)
    keys = _keys(comparison)
    if winner not in keys and winner not in Outcome.values:
        choices = ", ".join([*keys, *Outcome.values])
        raise Invalid(f"Unknown winner '{winner}'; expected one of {choices}")
    vote = Vote.objects.filter(comparison=comparison, turn=turn, user_id=user_id).first()
    hidden = comparison.identity_hidden
    if vote is not None and vote.blind and not hidden:
        raise Conflict("The models are revealed: this vote can no longer be changed")
    if vote is None:
        vote = Vote(comparison=comparison, turn=turn, user_id=user_id, blind=hidden)
    was_counted = vote.pk is not None and vote.counted
    vote.winner = winner
    vote.void = SelfNamedFlag.objects.filter(comparison=comparison, turn=turn).exists()
    vote.slot_models = {r.key: f"{r.provider}:{r.model_name}" for r in comparison.responses.all()}
    if was_counted or vote.counted:
        _counters_bump(user_id=user_id)
    vote.save()
    _ledger_replace(vote, comparison)
    if reveal:
        _reveal(comparison)
    vote.comparison = comparison  # with its reveal state, for the caller's answer
    return vote


@transaction.atomic
def vote_retract(*, user_id: str, comparison_id: str, turn: int = 0) -> None:
    """Undo the caller's vote on one turn. Raises NotFound (no such comparison or no vote) and
    Conflict (a blind vote after the reveal)."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    _check_turn(comparison, turn)
    vote = Vote.objects.filter(comparison=comparison, turn=turn, user_id=user_id).first()
    if vote is None:
        raise NotFound(f"No vote on turn {turn} of session {comparison_id}")
    if vote.blind and not comparison.identity_hidden:
        raise Conflict("The models are revealed: this vote can no longer be undone")
    if vote.counted:
        _counters_bump(user_id=user_id)
        pair_tallies_add(battles=_ledger_withdraw(vote), tags=_tag_names(comparison))
    vote.delete()


def _reveal(comparison: Comparison) -> None:
    if comparison.identity_hidden:
        comparison.revealed_at = timezone.now()
        Comparison.objects.filter(pk=comparison.pk).update(revealed_at=comparison.revealed_at)


@transaction.atomic
def comparison_reveal(*, user_id: str, comparison_id: str) -> Comparison:
    """Show a blind comparison's models from now on (idempotent; a no-op when not blind)."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    _reveal(comparison)
    return comparison


def _flagged_turn_update(comparison: Comparison, turn: int, user_id: str) -> None:
    """Void (or restore) the turn's votes after its flags changed."""
    void = SelfNamedFlag.objects.filter(comparison=comparison, turn=turn).exists()
    votes = list(Vote.objects.filter(comparison=comparison, turn=turn).exclude(void=void))
    if any(vote.blind for vote in votes):
        _counters_bump(user_id=user_id)
    for vote in votes:
        vote.void = void
        vote.save(update_fields=["void"])
        _ledger_replace(vote, comparison)


def _check_flaggable(comparison: Comparison) -> None:
    if not comparison.identity_hidden:
        raise Conflict("Only a blind comparison's answers can be flagged, before the reveal")


@transaction.atomic
def flag_set(*, user_id: str, comparison_id: str, key: str, turn: int = 0) -> SelfNamedFlag:
    """Flag the answer of slot ``key`` on ``turn`` as naming its own model: that turn's vote no
    longer counts. Only before a blind comparison's reveal (Conflict otherwise)."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    _check_turn(comparison, turn)
    _check_key(comparison, key)
    _check_flaggable(comparison)
    flag, _ = SelfNamedFlag.objects.get_or_create(
        comparison=comparison, turn=turn, key=key, defaults={"user_id": user_id}
    )
    _flagged_turn_update(comparison, turn, user_id)
    return flag


@transaction.atomic
def flag_clear(*, user_id: str, comparison_id: str, key: str, turn: int = 0) -> None:
    """Withdraw a flag (before the reveal); the turn's vote counts again if no flag is left."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    _check_turn(comparison, turn)
    _check_key(comparison, key)
    _check_flaggable(comparison)
    deleted, _ = SelfNamedFlag.objects.filter(comparison=comparison, turn=turn, key=key).delete()
    if not deleted:
        raise NotFound(f"Answer {key} of turn {turn} is not flagged")
    _flagged_turn_update(comparison, turn, user_id)


def tag_normalise(*, name: str) -> str:
    """A tag as stored: trimmed, lower case, inner whitespace collapsed; Invalid if unusable."""
    tag = " ".join(name.split()).lower()
    if not tag or len(tag) > Tag.MAX_LENGTH:
        raise Invalid(f"A tag has 1 to {Tag.MAX_LENGTH} characters: '{name[:60]}'")
    if any(not ch.isprintable() for ch in tag):
        raise Invalid("A tag must not contain control characters")
    return tag


@transaction.atomic
def tags_set(*, user_id: str, comparison_id: str, tags: Sequence[str]) -> list[str]:
    """Replace the comparison's tags (normalised, deduplicated, at most ``MAX_TAGS``)."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    names = sorted({tag_normalise(name=name) for name in tags})
    if len(names) > MAX_TAGS:
        raise Invalid(f"At most {MAX_TAGS} tags per comparison")
    old = set(_tag_names(comparison))
    Tag.objects.filter(comparison=comparison).exclude(name__in=names).delete()
    Tag.objects.bulk_create(
        [Tag(comparison=comparison, name=name) for name in names], ignore_conflicts=True
    )
    _bump([tags_key(scope=ALL), tags_key(scope=scope_key(user_id=user_id))])
    if old != set(names):
        _tallies_retag(comparison, added=set(names) - old, removed=old - set(names))
    return names


def share_token_digest(*, token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def share_create(*, user_id: str, comparison_id: str) -> tuple[Share, str]:
    """A new read-only link (the previous one, if any, stops working); returns it and its
    token, which is not stored and cannot be shown again."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    Share.objects.filter(comparison=comparison, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token = secrets.token_urlsafe(32)
    share = Share.objects.create(
        comparison=comparison, token_digest=share_token_digest(token=token), created_by=user_id
    )
    return share, token


@transaction.atomic
def share_revoke(*, user_id: str, comparison_id: str) -> int:
    """Stop the comparison's link working (idempotent); returns how many were active."""
    comparison = _owned_for_update(user_id=user_id, comparison_id=comparison_id)
    return Share.objects.filter(comparison=comparison, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def _board(
    *, user_id: str | None, tag: str, since: date | None, tally: selectors.Tally
) -> dict[str, Any]:
    counts, votes = selectors.tally_pairs(tally=tally)
    rated = ratings_fit(counts=counts)
    return {
        "scope": "all" if user_id is None else "me",
        "tag": tag or None,
        # The since-day's first instant: the same ISO 8601 date-time form as before rounding.
        "since": datetime.combine(since, time(), tzinfo=UTC).isoformat() if since else None,
        "votes": votes,
        "battles": sum(c.a_wins + c.b_wins + c.ties for c in counts),
        "computedAt": timezone.now().isoformat(),
        "models": [
            {
                "rank": rank,
                "model": r.model.partition(":")[2],
                "provider": r.model.partition(":")[0],
                "rating": round(r.rating, 1),
                "lower": round(r.lower, 1),
                "upper": round(r.upper, 1),
                "battles": r.battles,
                "wins": r.wins,
                "losses": r.losses,
                "ties": r.ties,
                "winRate": round(r.win_rate, 4),
            }
            for rank, r in enumerate(rated, start=1)
        ],
    }


def since_day(*, since: datetime | date | None) -> date | None:
    """The first UTC day a ``since`` board counts: a datetime is rounded down to its UTC date
    (a naive one is taken as UTC)."""
    if since is None or not isinstance(since, datetime):
        return since
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(UTC).date()


def leaderboard_refresh(
    *, user_id: str | None, tag: str = "", since: datetime | date | None = None
) -> dict[str, Any]:
    """Fit the board from the kept pair sums of its scope and tag (for a ``since`` board, the
    daily ones from its since-day on) and store it."""
    scope = scope_key(user_id=user_id)
    day = since_day(since=since)
    version, tags_version = selectors.counter_versions(keys=[scope, tags_key(scope=scope)])
    tags_version = tags_version if tag else 0
    tally = selectors.pair_tally(scope=scope, tag=tag, since=day)
    tally = {key: sums for key, sums in tally.items() if sums[0] or sums[1]}
    board = _board(user_id=user_id, tag=tag, since=day, tally=tally)
    # One upsert (a concurrent request may store the same board first: the later one wins).
    Leaderboard.objects.bulk_create(
        [
            Leaderboard(
                scope=scope,
                tag=tag,
                since=day.isoformat() if day else "",
                version=version,
                tags_version=tags_version,
                result=board,
                computed_at=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["scope", "tag", "since"],
        update_fields=["version", "tags_version", "result", "computed_at"],
    )
    return board


def leaderboard_current(
    *, user_id: str | None, tag: str = "", since: datetime | date | None = None
) -> dict[str, Any]:
    """The stored board when no vote, flag or tag changed since it was fitted; else a new fit.
    ``since``: see :func:`since_day`."""
    cached = selectors.leaderboard_cached(user_id=user_id, tag=tag, since=since_day(since=since))
    if cached is not None:
        return cached
    return leaderboard_refresh(user_id=user_id, tag=tag, since=since)


def leaderboards_refresh_all() -> list[Leaderboard]:
    """Refit every stored board and the team-wide one (the ``arena_ratings`` command)."""
    keys: set[tuple[str, str, str]] = {(ALL, "", "")}
    keys |= set(Leaderboard.objects.values_list("scope", "tag", "since"))
    for scope, tag, since in sorted(keys):
        user_id = None if scope == ALL else scope.removeprefix("u:")
        leaderboard_refresh(
            user_id=user_id, tag=tag, since=date.fromisoformat(since) if since else None
        )
    return list(Leaderboard.objects.order_by("scope", "tag", "since"))


def leaderboards_prune(*, days: int) -> int:
    """Drop stored boards not refitted for ``days`` days; returns how many."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Leaderboard.objects.filter(computed_at__lt=cutoff).delete()
    return deleted


def battles_rebuild() -> int:
    """Recreate the battle ledger from the votes (after a change of counting rules); every
    stored board is dropped, to be refitted in full."""
    total = 0
    with transaction.atomic():
        _bump([ALL])
        Battle.objects.all().delete()
        Leaderboard.objects.all().delete()
        for vote in Vote.objects.select_related("comparison").order_by("pk"):
            battles = _battles(vote, vote.comparison)
            Battle.objects.bulk_create(battles)
            total += len(battles)
        pair_tallies_rebuild()
    return total
