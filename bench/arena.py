"""``python -m bench.arena [--votes 100000] [--sqlite]``: how fast ``GET /leaderboard`` answers.

A throw-away database (PostgreSQL at ``BENCH_PG_URL``, or a SQLite file with ``--sqlite``) is
migrated and filled with ``--votes`` blind votes (one comparison of two models each, among 12
models of known strengths, 20 users, 10 % ties, 3 % both bad, cast over the last ``DAYS`` days, a
quarter of the prompts tagged ``code``) and their battle rows, written in bulk by this harness,
then the kept pair sums recounted (``pair_tallies_rebuild``, as ``arena_ratings --rebuild`` does).
The real server (``manage.py serve``, ``DJANGO_DEBUG=0``) is then started on it and asked over
HTTP with a real RS256 token:

- *first fit*: the first request for a board (none stored yet): the kept sums of its scope and
  tag (all time, or the daily ones from its since-day on), then Bradley-Terry and 200 bootstrap
  rounds; for the plain board, ``scope=me``, and each board of :func:`filters`;
- *after a vote*: ``--rounds`` times, a ``PUT …/votes/0`` (every stored board is now stale),
  then one request for each board: each one a refit from the kept sums;
- *stored*: the other requests, answered from the stored board (two indexed reads).

Timings are wall-clock per request at the client, nearest-rank percentiles; the load average is
printed with them. See docs/benchmarks.md ("Leaderboard").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ISSUER, PY, Child, Keys, free_port, machine, pct, wait_http

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
MODELS = [(f"vendor{n % 3}", f"model-{n:02d}", 0.15 * (6 - n)) for n in range(12)]
USERS = 20
DAYS = 90


def filters(today: date) -> dict[str, str]:
    """The filtered boards timed, by name: their query strings' tails."""
    month = (today - timedelta(days=30)).isoformat()
    return {
        "tag=code": "&tag=code",
        "since=<30 days ago, a date>": f"&since={month}",
        "since=<7 days ago, a date-time>": f"&since={today - timedelta(days=7)}T12:34:56Z",
        "since=2000-01-01 (all days)": "&since=2000-01-01T00:00:00Z",
        "tag=code&since=<30 days ago>": f"&tag=code&since={month}",
    }


def seed(votes: int, rng_seed: int = 1) -> None:
    """Fill the database named by DATABASE_URL (this process's Django) with blind votes."""
    import numpy as np
    from django.db import transaction
    from django.utils import timezone

    from arena.models import Battle, Counter, Tag, Vote
    from comparisons.models import Comparison, ComparisonStatus, ModelResponse

    rng = np.random.default_rng(rng_seed)
    now = timezone.now()
    batch = 5000
    for start in range(0, votes, batch):
        size = min(batch, votes - start)
        comparisons, responses, vote_rows, outcomes = [], [], [], []
        for n in range(start, start + size):
            a, b = rng.choice(len(MODELS), size=2, replace=False)
            user = f"user_{n % USERS}"
            comparison = Comparison(
                user_id=user,
                prompt=f"prompt {n}",
                status=ComparisonStatus.COMPLETE,
                blind=True,
                revealed_at=now,
            )
            comparisons.append(comparison)
            models = {}
            for position, (key, m) in enumerate((("A", a), ("B", b))):
                provider, name, _ = MODELS[m]
                responses.append(
                    ModelResponse(
                        comparison=comparison,
                        position=position,
                        key=key,
                        provider=provider,
                        model_name=name,
                        status="complete",
                        content="…",
                    )
                )
                models[key] = f"{provider}:{name}"
            draw = rng.random()
            p_a = 1.0 / (1.0 + math.exp(MODELS[b][2] - MODELS[a][2]))
            winner = (
                "bothBad"
                if draw < 0.03
                else "tie"
                if draw < 0.13
                else ("A" if rng.random() < p_a else "B")
            )
            vote_rows.append(
                Vote(
                    comparison=comparison,
                    turn=0,
                    user_id=user,
                    winner=winner,
                    blind=True,
                    slot_models=models,
                )
            )
            cast_at = now - timedelta(seconds=int(rng.integers(DAYS * 86400)))
            outcomes.append((comparison, user, models, winner, cast_at))
        with transaction.atomic():
            Comparison.objects.bulk_create(comparisons)
            # A quarter of the prompts tagged "code", for the tag board's first fit.
            Tag.objects.bulk_create([Tag(comparison=c, name="code") for c in comparisons[::4]])
            ModelResponse.objects.bulk_create(responses)
            Vote.objects.bulk_create(vote_rows)
            battles = []
            for vote, (comparison, user, models, winner, cast_at) in zip(
                vote_rows, outcomes, strict=True
            ):
                first, second = sorted(models.values())
                if winner in ("A", "B"):
                    result = "a" if models[winner] == first else "b"
                else:
                    result = winner
                battles.append(
                    Battle(
                        vote=vote,
                        comparison=comparison,
                        user_id=user,
                        cast_at=cast_at,
                        model_a=first,
                        model_b=second,
                        result=result,
                        votes=1,
                    )
                )
            Battle.objects.bulk_create(battles)
    Counter.objects.bulk_create(
        [Counter(key="*", version=1)]
        + [Counter(key=f"u:user_{u}", version=1) for u in range(USERS)]
    )
    from arena.services import pair_tallies_rebuild

    pair_tallies_rebuild()  # what the votes' own writes would have kept


def sums_compared(
    boards: dict[str, str], repetitions: int
) -> dict[str, dict[str, float | list[float]]]:
    """In this process, for each board of the team scope: reading its fit's input from the kept
    sums (now) against one ``GROUP BY`` over the matching battles (the filtered boards' first fit
    before the sums per tag and day): wall ms, ``repetitions`` times alternately, medians."""
    from urllib.parse import parse_qs

    from arena import selectors

    result: dict[str, dict[str, float | list[float]]] = {}
    for name, tail in boards.items():
        query = {k: v[0] for k, v in parse_qs(tail.lstrip("&")).items()}
        tag = query.get("tag", "")
        # The query's since-day (its values here are UTC dates or UTC date-times).
        since = date.fromisoformat(query["since"][:10]) if "since" in query else None
        start = datetime.combine(since, datetime.min.time(), tzinfo=UTC) if since else None
        kept_ms: list[float] = []
        scan_ms: list[float] = []
        for _ in range(repetitions):
            started = time.perf_counter()
            kept = selectors.pair_tally(scope="*", tag=tag, since=since)
            kept_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            scanned = selectors.battle_tally(user_id=None, tag=tag, since=start)
            scan_ms.append((time.perf_counter() - started) * 1000)
            assert {k: v for k, v in kept.items() if any(v)} == scanned, name
        result[name] = {
            "kept_sums_ms": [round(v, 1) for v in kept_ms],
            "kept_sums_p50_ms": round(pct(kept_ms, 50), 1),
            "group_by_ms": [round(v, 1) for v in scan_ms],
            "group_by_p50_ms": round(pct(scan_ms, 50), 1),
        }
    return result


def timed_get(url: str, token: str) -> tuple[float, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, json.loads(body)


def timed_put(url: str, token: str, data: Any) -> float:
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10, help="votes, each then every board")
    parser.add_argument("--repetitions", type=int, default=7, help="of the offline sum reads")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-arena-"))
    pg_name = ""
    if args.sqlite:
        url = f"sqlite:///{logs / 'arena.sqlite3'}"
    else:
        import psycopg

        pg_name = f"bench_arena_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    keys = Keys()
    env = os.environ.copy()
    env.update(
        DATABASE_URL=url,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CLERK_JWT_KEY=keys.public_pem,
        CLERK_ISSUER=ISSUER,
        LOG_LEVEL="WARNING",
    )
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    import django

    django.setup()
    from django.core.management import call_command

    server: Child | None = None
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        seed(args.votes)
        seeded_s = time.perf_counter() - started
        load_offline = os.getloadavg()
        offline = sums_compared(
            {"scope=all": "", **filters(datetime.now(UTC).date())}, args.repetitions
        )
        from django.db import connections

        connections.close_all()

        port = free_port()
        argv = [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = Child("server", argv, env, logs)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/", server)
        # The server answers while its start-up imports the provider SDKs in a thread (~2 s,
        # longer on a busy machine); a first request meanwhile would time that, not the board.
        time.sleep(10)
        token = keys.token("user_0")
        board_url = base + "/leaderboard?scope=all"
        # The process's first requests pay for URL resolution, the API's schemas, the first
        # database connection: warm them with the empty board of a user who never voted.
        idle = keys.token("user_idle")
        warm = [timed_get(base + "/leaderboard?scope=me", idle)[0] for _ in range(5)]

        boards = {
            "scope=all": board_url,
            "scope=me": base + "/leaderboard?scope=me",
            **{name: board_url + tail for name, tail in filters(datetime.now(UTC).date()).items()},
        }
        first: dict[str, float] = {}
        answers: dict[str, Any] = {}
        for name, url in boards.items():
            first[name], answers[name] = timed_get(url, token)
        board = answers["scope=all"]
        stored = [timed_get(board_url, token)[0] for _ in range(args.requests)]
        stored_tag = [timed_get(boards["tag=code"], token)[0] for _ in range(args.requests // 4)]
        # A new vote makes the stored boards stale: the next request for each refits.
        from comparisons import services as comparison_services

        one = comparison_services.comparison_create(
            user_id="user_0",
            prompt="one more",
            slots=[
                comparison_services.SlotSpec(MODELS[0][0], MODELS[0][1]),
                comparison_services.SlotSpec(MODELS[1][0], MODELS[1][1]),
            ],
            blind=True,
            enforce_limits=False,
        )
        connections.close_all()
        load_before = os.getloadavg()
        refits: dict[str, list[float]] = {name: [] for name in boards}
        votes_ms = []
        for n in range(args.rounds):
            winner = ("A", "tie", "B")[n % 3]
            votes_ms.append(
                timed_put(f"{base}/sessions/{one.id}/votes/0", token, {"winner": winner})
            )
            for name, url in boards.items():
                ms, answers[name] = timed_get(url, token)
                refits[name].append(ms)
        load_after = os.getloadavg()
        stored_after = [timed_get(board_url, token)[0] for _ in range(args.requests)]

        result = {
            "machine": machine(),
            "load_average_1_5_15": [round(v, 2) for v in load_before],
            "load_average_after_refits": [round(v, 2) for v in load_after],
            "database": "SQLite" if args.sqlite else "PostgreSQL",
            "votes": board["votes"],
            "models": len(board["models"]),
            "seed_seconds": round(seeded_s, 1),
            "warm_up_ms": [round(v, 1) for v in warm],
            "load_average_offline": [round(v, 2) for v in load_offline],
            "fit_input_offline": offline,
            "boards": {
                name: {
                    "votes": answers[name]["votes"],
                    "first_fit_ms": round(first[name], 1),
                    "after_vote_ms": [round(v, 1) for v in refits[name]],
                    "after_vote_p50_ms": round(pct(refits[name], 50), 1),
                    "after_vote_max_ms": round(max(refits[name]), 1),
                }
                for name in boards
            },
            "stored_p50_ms": round(pct(stored + stored_after, 50), 2),
            "stored_p95_ms": round(pct(stored + stored_after, 95), 2),
            "stored_max_ms": round(max(stored + stored_after), 2),
            "tag_stored_p50_ms": round(pct(stored_tag, 50), 2),
            "vote_put_p50_ms": round(pct(votes_ms, 50), 1),
            "top": [
                (m["provider"] + ":" + m["model"], m["rating"], m["lower"], m["upper"])
                for m in answers["scope=all"]["models"][:3]
            ],
        }
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    finally:
        if server is not None:
            server.stop()
        from django.db import connections

        connections.close_all()
        if pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
