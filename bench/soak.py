"""``python -m bench --soak 30m [--out docs/benchmarks.md]``: moderate load for a long time, with
the server's resources sampled throughout and judged flat or not.

Two daphne processes on the Redis layer and PostgreSQL (the production shape, as in the matrix's
``daphne-redis-watch`` cases): back-to-back rounds of ``SOAK_COMPARISONS`` comparisons (2 streams
each, 64 deltas at 20/s, ``SOAK_REPEAT`` in a row per socket) started on process A, each watched
from process B. Every round's load generator opens fresh sockets, so connection set-up and
teardown are soaked too. Every ``interval`` seconds: RSS, USS and open descriptors of each server
process, its connections in Redis's ``CLIENT LIST`` and in ``pg_stat_activity``.

After each round, once its sockets have closed and ``REST_SECONDS`` have passed, the same
readings are taken again: the server *at rest*, always at the same point of the load's cycle.
Flat is judged on these: the median over the last sixth of the run differs from the median over
the sixth that starts after the first tenth (warm-up) by at most 5 %. (The periodic samples land
at any point of a round, and open sockets follow the round: judged on them, a 15 s sampling
interval beating against ~10 s rounds would decide the verdict.)
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.resources import (
    Postgres,
    machine_load,
    median,
    process_memory,
    redis_clients,
    write_section,
)

SOAK_COMPARISONS, SOAK_REPEAT = 20, 2
FLAT = 0.05
#: After a round, time for the servers to finish closing its sockets before the rest reading.
REST_SECONDS = 1.0


def parse_duration(text: str) -> float:
    """``30m``, ``90s``, ``1h`` or seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


@dataclass
class Sample:
    t: float
    rss: int
    uss: int
    fds: int
    redis: int
    redis_all: int
    db: int
    load: float


@dataclass(eq=False)
class SoakSampler(threading.Thread):
    pids: list[int]
    pg: Postgres
    redis_url: str
    interval: float
    samples: list[Sample] = field(default_factory=list)
    #: Taken by the driver between rounds (:meth:`rest`).
    resting: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def rest(self) -> None:
        """A reading between rounds, once the last round's sockets are closed."""
        time.sleep(REST_SECONDS)
        self.sample(self.resting)

    def sample(self, into: list[Sample] | None = None) -> None:
        import os

        try:
            mem = process_memory(self.pids)
            ours, total = redis_clients(self.pids, self.redis_url)
            (self.samples if into is None else into).append(
                Sample(
                    t=time.monotonic() - self.t0,
                    rss=mem["rss"],
                    uss=mem["uss"],
                    fds=mem["fds"],
                    redis=ours,
                    redis_all=total,
                    db=self.pg.connections(),
                    load=os.getloadavg()[0],
                )
            )
        except Exception as exc:  # a missed sample is reported, the soak goes on
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])

    def run(self) -> None:
        self.sample()
        while not self.stopped.wait(self.interval):
            self.sample()


def flatness(samples: list[Sample], attr: str) -> tuple[float, float, float, float, float]:
    """(early median, late median, relative change, min, max) over the steady part."""
    end = samples[-1].t
    width = end / 6
    early_from = end / 10
    early = [getattr(s, attr) for s in samples if early_from <= s.t <= early_from + width]
    late = [getattr(s, attr) for s in samples if s.t >= end - width]
    steady = [getattr(s, attr) for s in samples if s.t >= early_from]
    a, b = median(early), median(late)
    change = (b - a) / a if a else (0.0 if b == a else math.inf)
    return a, b, change, min(steady), max(steady)


def run_soak(args: argparse.Namespace, seconds: float) -> str:
    from bench.__main__ import REDIS, Bench, Case, Result, pct

    bench = Bench(args)
    print(f"[soak] {seconds:.0f} s; logs in {bench.logs}", flush=True)
    started = time.monotonic()
    results: list[Result] = []
    pg: Postgres | None = None
    loaded = started
    try:
        bench.start_upstream()
        from bench.__main__ import Database

        bench.db = Database()
        bench.migrate()
        pg = Postgres(bench.db.url)
        a, url_a = bench.start_server("daphne", "redis", "soak-a")
        b, url_b = bench.start_server("daphne", "redis", "soak-b")
        pids = bench.server_pids(a) + bench.server_pids(b)
        warm = Case("warm", "relay", 4, layer="redis", watch=True, scenario="warm", deltas=4)
        warm.rate = 1000.0
        bench.run_case(warm, (url_a, url_b), [])
        sampler = SoakSampler(pids, pg, REDIS, args.soak_interval)
        sampler.start()
        load_start = machine_load()
        case = Case("soak", "relay", 2 * SOAK_COMPARISONS, layer="redis", watch=True)
        case.repeat = SOAK_REPEAT
        rounds = 0
        loaded = time.monotonic()  # the duration counts from here: start-up is not soak
        while time.monotonic() - loaded < seconds:
            rounds += 1
            result = bench.run_case(case, (url_a, url_b), pids)
            results.append(result)
            sampler.rest()
            print(
                f"[soak] round {rounds} at {time.monotonic() - started:.0f}s: "
                f"{len(result.chunk)} chunks, lost/dup/bad {result.lost}/{result.dup}/"
                f"{result.bad}, watch bad {result.watch_bad}, p99 {pct(result.chunk, 99):.1f} ms"
                + (f"; {result.note}" if result.note else ""),
                flush=True,
            )
        sampler.stopped.set()
        sampler.join(30)
        sampler.sample()
        load_end = machine_load()
    finally:
        bench.close()
        if pg is not None:
            pg.close()
    elapsed = time.monotonic() - loaded
    return report(results, sampler, elapsed, rounds, load_start, load_end, args)


def report(
    results: list[Any],
    sampler: SoakSampler,
    elapsed: float,
    rounds: int,
    load_start: str,
    load_end: str,
    args: argparse.Namespace,
) -> str:
    from bench.__main__ import pct
    from bench.common import machine

    info = machine()
    samples = sampler.samples
    chunks = [c for r in results for c in r.chunk]
    lost = sum(r.lost + r.dup + r.bad + r.watch_bad for r in results)
    comparisons = sum(r.case.total for r in results)
    loads = [s.load for s in samples]
    lines = [
        f"Machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}. Code: commit "
        f"{info['commit']}. Command: `python -m bench --soak {args.soak}` ({elapsed / 60:.1f} min, "
        f"{rounds} rounds, {comparisons} comparisons = {2 * comparisons} streams + as many "
        f"watchers; {len(samples)} samples every {args.soak_interval:.0f} s). Machine load "
        f"during the soak (other engineers' tests included): 1-min load average mean "
        f"{sum(loads) / max(1, len(loads)):.1f}, max {max(loads, default=math.nan):.1f} "
        f"({load_start} at the start, {load_end} at the end).",
        "",
        f"Chunks: {len(chunks)} relayed to starting sockets, write→recv p50 / p99 "
        f"{pct(chunks, 50):.2f} / {pct(chunks, 99):.2f} ms (n = {len(chunks)}); "
        f"lost / duplicated / out-of-order / watcher errors: {lost}.",
        "",
        f"At rest ({len(sampler.resting)} readings, one {REST_SECONDS:.0f} s after each round's "
        "sockets closed) and during the rounds (the periodic samples):",
        "",
        "| resource (both server processes) | at rest: early median | late median | change "
        "| flat within 5 % | during rounds: min / max after warm-up |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for label, attr, scale, unit in (
        ("RSS", "rss", 2**20, " MiB"),
        ("USS", "uss", 2**20, " MiB"),
        ("open files", "fds", 1, ""),
        ("Redis connections (CLIENT LIST)", "redis", 1, ""),
        ("DB connections (pg_stat_activity)", "db", 1, ""),
    ):
        if not samples or not sampler.resting:
            break
        a, b, change, _, _ = flatness(sampler.resting, attr)
        _, _, _, lo, hi = flatness(samples, attr)
        ok = abs(change) <= FLAT
        verdicts.append((label, ok, change))
        lines.append(
            f"| {label} | {a / scale:.1f}{unit} | {b / scale:.1f}{unit} | {100 * change:+.1f} % "
            f"| {'**met**' if ok else '**missed**'} | {lo / scale:.1f} / {hi / scale:.1f}{unit} |"
        )
    lines += [
        "",
        "Readings at rest (minute: RSS MiB, USS MiB, open files, Redis conns, DB conns, load):",
        "",
        "```",
    ]
    step = max(1, len(sampler.resting) // 30)
    for s in sampler.resting[::step]:
        lines.append(
            f"{s.t / 60:5.1f}: {s.rss / 2**20:6.1f} {s.uss / 2**20:6.1f} {s.fds:4d} {s.redis:3d} "
            f"{s.db:3d} {s.load:4.1f}"
        )
    lines.append("```")
    if sampler.errors:
        lines += ["", f"Sampling errors: {len(sampler.errors)}, first: {sampler.errors[0]}"]
    flat = all(ok for _, ok, _ in verdicts)
    lines += [
        "",
        f"Target: soak flat within 5 % — {'**met**' if flat else '**missed**'} ("
        + ", ".join(f"{label} {100 * change:+.1f} %" for label, _, change in verdicts)
        + f"); 0 lost chunks {'**met**' if lost == 0 else '**missed**'} ({lost}).",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    seconds = parse_duration(args.soak)
    text = run_soak(args, seconds)
    print(text)
    if args.out:
        write_section(Path(args.out), "soak", text)
