"""``python -m bench.arena [--votes 100000] [--sqlite]``: how fast ``GET /leaderboard`` answers.

A throw-away database (PostgreSQL at ``BENCH_PG_URL``, or a SQLite file with ``--sqlite``) is
migrated and filled with ``--votes`` blind votes (one comparison of two models each, among 12
models of known strengths, 20 users, 10 % ties, 3 % both bad) and their battle rows, written in
bulk by this harness. The real server (``manage.py serve``, ``DJANGO_DEBUG=0``) is then started on
it and asked over HTTP with a real RS256 token:

- *full fit*: the first request (no stored board yet): the scope's per-pair sums (kept by every
  vote), then Bradley-Terry and 200 bootstrap rounds; *full fit, tag* / *since*: the same for a
  tag or period board, whose first fit is one GROUP BY over the matching battles;
- *caught up*: the first request after a vote (the stored board is stale): the stored counts
  plus the ledger rows after its mark, then the fit;
- *stored*: the other requests, answered from the stored board (two indexed reads).

Timings are wall-clock per request at the client, nearest-rank percentiles. See
docs/benchmarks.md ("Leaderboard").
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
from pathlib import Path
from typing import Any

from bench.common import ISSUER, PY, Child, Keys, free_port, machine, pct, wait_http

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
MODELS = [(f"vendor{n % 3}", f"model-{n:02d}", 0.15 * (6 - n)) for n in range(12)]
USERS = 20


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
            outcomes.append((comparison, user, models, winner))
        with transaction.atomic():
            Comparison.objects.bulk_create(comparisons)
            # A quarter of the prompts tagged "code", for the tag board's first fit.
            Tag.objects.bulk_create([Tag(comparison=c, name="code") for c in comparisons[::4]])
            ModelResponse.objects.bulk_create(responses)
            Vote.objects.bulk_create(vote_rows)
            battles = []
            for vote, (comparison, user, models, winner) in zip(vote_rows, outcomes, strict=True):
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
                        cast_at=now,
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

        refits = []
        full_ms, board = timed_get(board_url, token)
        full_me_ms, _ = timed_get(base + "/leaderboard?scope=me", token)
        tag_ms, tagged = timed_get(board_url + "&tag=code", token)
        since_ms, _ = timed_get(board_url + "&since=2000-01-01T00:00:00Z", token)
        stored = [timed_get(board_url, token)[0] for _ in range(args.requests)]
        # A new vote makes the stored board stale: the next request refits, then stored again.
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
        vote_ms = timed_put(f"{base}/sessions/{one.id}/votes/0", token, {"winner": "A"})
        for n in range(10):
            ms, after = timed_get(board_url, token)
            refits.append(ms)
            winner = ("tie", "B", "A")[n % 3]
            timed_put(f"{base}/sessions/{one.id}/votes/0", token, {"winner": winner})
        stored_after = [timed_get(board_url, token)[0] for _ in range(args.requests)]
        mine = [timed_get(base + "/leaderboard?scope=me", token)[0] for _ in range(20)]

        result = {
            "machine": machine(),
            "database": "SQLite" if args.sqlite else "PostgreSQL",
            "votes": board["votes"],
            "models": len(board["models"]),
            "seed_seconds": round(seeded_s, 1),
            "warm_up_ms": [round(v, 1) for v in warm],
            "full_fit_ms": round(full_ms, 1),
            "full_fit_me_ms": round(full_me_ms, 1),
            "full_fit_tag_ms": round(tag_ms, 1),
            "tag_votes": tagged["votes"],
            "full_fit_since_ms": round(since_ms, 1),
            "caught_up_ms": [round(v, 1) for v in refits],
            "caught_up_p50_ms": round(pct(refits, 50), 1),
            "stored_p50_ms": round(pct(stored + stored_after, 50), 2),
            "stored_p95_ms": round(pct(stored + stored_after, 95), 2),
            "stored_max_ms": round(max(stored + stored_after), 2),
            "me_stored_p50_ms": round(pct(mine[1:], 50), 2),
            "vote_put_ms": round(vote_ms, 1),
            "top": [
                (m["provider"] + ":" + m["model"], m["rating"], m["lower"], m["upper"])
                for m in after["models"][:3]
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
