"""``python -m bench [--quick] [--reps N] [--cases ...] [--out docs/benchmarks.md]``: the relay
benchmark.

First the interleaved comparison (``bench/suite.py``: the server beside lean direct, the floor
relay, the SDKs and LiteLLM, repeated, with intervals; ``--cases suite`` runs only it), then the
single-run cases of :func:`matrix`. Processes of the single-run cases: the fake upstream (paced scripted deltas, records write times), the real server
(``manage.py serve`` = daphne, or uvicorn; ``DJANGO_DEBUG=0``, PostgreSQL, in-memory or Redis
channel layer), load-generator processes (``bench.loadgen``), the direct-SDK baseline
(``bench.direct``) and LiteLLM's proxy with an SSE client (``bench.peer``). See
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    ANTHROPIC_MODEL,
    GOOGLE_MODEL,
    ISSUER,
    PY,
    ROOT,
    VENDOR_OF_MODEL,
    Child,
    Keys,
    free_port,
    http_json,
    machine,
    ms,
    pct,
    probe_env,
    run_worker,
    wait_http,
)
from bench.modes import extra_modes, run_extra_mode
from bench.suite import Report, Suite

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# As shipped. Before commit a0dfdd6 the server's Redis layer read with redis-py 8's default 5 s
# socket timeout, the same as channels-redis' BZPOPMIN timeout, and idle sockets were closed with
# 1011; ``BENCH_REDIS_URL=redis://127.0.0.1:6379/0?socket_timeout=30`` works around that there.
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LITELLM_KEY = "sk-bench-" + secrets.token_hex(8)
DELTAS, DELTA_BYTES, RATE = 64, 16, 20.0


@dataclass
class Case:
    name: str
    kind: str  # relay | direct | litellm | idle
    streams: int = 2
    server: str = "daphne"  # daphne | uvicorn
    layer: str = "memory"  # memory | redis
    watch: bool = False
    scenario: str | None = None  # a named upstream scenario (dense)
    deltas: int = DELTAS
    rate: float = RATE
    repeat: int = 1  # comparisons run one after another on each socket
    transport: str = "ws"  # ws (/ws) | sio (Socket.IO, WebSocket transport, pre-encoded path)
    slow_reader: bool = False  # plus one socket that stops reading (SlowReader)

    @property
    def comparisons(self) -> int:
        """Comparisons at the same time."""
        return max(1, self.streams // 2)

    @property
    def total(self) -> int:
        """Comparisons in the case."""
        return self.comparisons * self.repeat

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.kind, self.server, self.layer + (f"-{self.scenario}" if self.scenario else ""))


@dataclass
class Result:
    case: Case
    ttft: list[float] = field(default_factory=list)
    chunk: list[float] = field(default_factory=list)
    start_first: list[float] = field(default_factory=list)
    watch_chunk: list[float] = field(default_factory=list)
    chunks: int = 0
    chunks_per_s: float = math.nan
    lost: int = 0
    #: Starts the server refused as busy (`server-busy`): shed load, not lost chunks.
    refused: int = 0
    #: Starting sockets the server closed (any code, e.g. 1011) before their comparison ended.
    closed: int = 0
    #: Sockets the server never opened (handshake failed): no start was sent on them.
    unopened: int = 0
    dup: int = 0
    bad: int = 0
    watch_bad: int = 0
    cpu: float = math.nan
    cpu_s: float = math.nan  # server CPU seconds over the case
    rss: float = math.nan
    db_rows: float = math.nan
    db_xacts: float = math.nan
    note: str = ""
    per_idle_kib: float = math.nan
    peak: int = 0


#: One comparison at a time: this many in a row, each the ``seq`` script (16 deltas at 20/s).
REPEAT, SEQ_DELTAS = 12, 16


def _case(name: str, kind: str, n: int, **options: Any) -> Case:
    if n == 1:  # a percentile of one comparison means nothing: several in a row
        options = {"repeat": REPEAT, "scenario": "seq", "deltas": SEQ_DELTAS, **options}
    return Case(name, kind, n, **options)


def matrix(quick: bool, litellm: bool) -> list[Case]:
    """The single-run cases beside the interleaved comparison (bench/suite.py), which measures
    the server against the baselines (lean direct, floor, SDK, LiteLLM) at 1, 50 and 200 streams
    on both transports. Kept here: what the comparison does not cover (400 streams, dense
    chunks, database writes, Redis with watchers, uvicorn, a slow reader, idle sockets)."""
    if quick:
        return []
    levels = [1, 50, 200, 400]
    # daphne-mem-50 is here for the database-writes comparison with daphne-mem-dense-50.
    cases = [_case(f"daphne-mem-{n}", "relay", n) for n in (50, 400)]
    # Right after daphne-mem-50 (same server, same streams): the two differ only in chunks per
    # second, and PostgreSQL's late statistics from the 200/400 cases cannot leak into it.
    cases.insert(
        len(cases) - 1,
        Case("daphne-mem-dense-50", "relay", 50, scenario="dense", deltas=256, rate=80.0),
    )
    cases += [
        _case(f"daphne-redis-watch-{n}", "relay", n, layer="redis", watch=True) for n in levels
    ]
    cases += [_case(f"uvicorn-mem-{n}", "relay", n, server="uvicorn") for n in (50, 400)]
    # The same 100 comparisons as daphne-mem-200, beside one socket that never reads; right
    # before on the same server, the same without it (the normal clients' p99 is compared).
    cases += [Case("daphne-mem-slowreader-200-off", "relay", 200)]
    cases += [Case("daphne-mem-slowreader-200", "relay", 200, slow_reader=True)]
    cases += [Case("idle-1000", "idle", 1000)]
    return cases


class SlowReader(threading.Thread):
    """One socket that does not read: it starts a large comparison (1.6 MB of text), reads its
    ``sessionCreated``, then stops reading (4 KiB receive buffer) and asks for its snapshot
    twice a second (within the watch rate limit) until the server drops it or the case ends."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.stopped = threading.Event()
        self.watches = 0
        self.closed = ""

    def run(self) -> None:
        import socket as socket_module

        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        host, port = self.url.removeprefix("ws://").split("/")[0].split(":")
        raw = socket_module.create_connection((host, int(port)))
        raw.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
        try:
            ws = connect(
                self.url,
                sock=raw,
                additional_headers={"Authorization": f"Bearer {self.token}"},
                compression=None,
                max_queue=1,
            )
            start = {"prompt": "scenario:big", "providers": ["google", "anthropic"]}
            ws.send(json.dumps({"event": "startComparison", "data": start}))
            while True:  # its id; from here on, nothing is read
                frame = json.loads(ws.recv(30))
                if frame["event"] == "sessionCreated":
                    sid = frame["data"]["sessionId"]
                    break
            watch = json.dumps({"event": "watchSession", "data": {"sessionId": sid}})
            while not self.stopped.wait(0.5):
                ws.send(watch)
                self.watches += 1
        except ConnectionClosed as exc:
            self.closed = f"closed by the server ({exc.rcvd.code if exc.rcvd else 'dropped'})"
        except OSError as exc:
            self.closed = f"dropped by the server ({type(exc).__name__})"


# --- PostgreSQL -----------------------------------------------------------------------------------


class Database:
    def __init__(self) -> None:
        import psycopg

        self.name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.name
        self._conn = psycopg.connect(self.url, autocommit=True)

    def counters(self) -> tuple[int, int]:
        """(rows inserted+updated+deleted in comparisons_* tables, committed transactions)."""
        self._conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = self._conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
            " WHERE relname LIKE 'comparisons_%%'"
        ).fetchone()
        xacts = self._conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(rows[0] if rows else 0), int(xacts[0] if xacts else 0)

    def drop(self) -> None:
        import psycopg

        self._conn.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- server processes -----------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Peak RSS (sum over the processes) sampled every 100 ms; every sample in ``series``."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak = 0
        self.series: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.procs)

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            with contextlib.suppress(Exception):
                rss = self.rss()
                self.peak = max(self.peak, rss)
                self.series.append((time.monotonic(), rss))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = Path(tempfile.mkdtemp(prefix="bench-"))
        self.keys = Keys()
        self.children: list[Child] = []
        self.upstream_url = ""
        self.db: Database | None = None
        self.prefix = f"bench{os.getpid()}"
        self.seq = 0

    # --- infrastructure -----------------------------------------------------------------------
    def start_upstream(self) -> None:
        port = free_port()
        child = Child(
            "upstream",
            [
                PY,
                "-m",
                "tests.fake_upstream",
                "--port",
                str(port),
                "--deltas",
                str(DELTAS),
                "--delta-bytes",
                str(DELTA_BYTES),
                "--rate",
                str(RATE),
                "--uvloop",
            ],
            os.environ.copy(),
            self.logs,
        )
        self.children.append(child)
        self.upstream_url = f"http://127.0.0.1:{port}"
        wait_http(self.upstream_url + "/_bench/requests", child)
        http_json(
            self.upstream_url + "/_bench/scenario",
            {"id": "dense", "deltas": 256, "delta_bytes": DELTA_BYTES, "rate": 80.0},
        )
        http_json(
            self.upstream_url + "/_bench/scenario",
            {"id": "warm", "deltas": 4, "delta_bytes": DELTA_BYTES, "rate": 1000.0},
        )
        http_json(
            self.upstream_url + "/_bench/scenario",
            {"id": "big", "deltas": 100, "delta_bytes": 8000, "rate": 1000.0},
        )
        http_json(
            self.upstream_url + "/_bench/scenario",
            {"id": "seq", "deltas": SEQ_DELTAS, "delta_bytes": DELTA_BYTES, "rate": RATE},
        )

    def server_env(self, layer: str) -> dict[str, str]:
        env = os.environ.copy()
        env.update(
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_SECURE_SSL_REDIRECT="0",
            CLERK_JWT_KEY=self.keys.public_pem,
            CLERK_ISSUER=ISSUER,
            ANTHROPIC_API_KEY="x",
            ANTHROPIC_BASE_URL=self.upstream_url,
            ANTHROPIC_MODEL=ANTHROPIC_MODEL,
            GOOGLE_GEMINI_API_KEY="x",
            GOOGLE_GEMINI_BASE_URL=self.upstream_url,
            GOOGLE_GEMINI_MODEL=GOOGLE_MODEL,
            PLAYGROUND_MAX_RUNNING_PER_USER="100000",
            PLAYGROUND_MAX_STARTS_PER_MINUTE="100000",
            # Every bench socket comes from 127.0.0.1, hundreds at once (accounts/limits.py).
            WS_MAX_UNAUTHENTICATED_PER_CLIENT="100000",
            WS_MAX_UNAUTHENTICATED="100000",
            DATABASE_URL=self.db.url if self.db else "",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            CHANNEL_LAYER_PREFIX=self.prefix,
        )
        env.update(kv.split("=", 1) for kv in self.args.server_env or [])
        env.pop("REDIS_URL", None)
        if layer == "redis":
            env["REDIS_URL"] = REDIS
        return env

    def start_server(
        self, server: str, layer: str, name: str, root: Path = ROOT, probe: Path | None = None
    ) -> tuple[Child, str]:
        port = free_port()
        env = self.server_env(layer)
        if probe is not None:
            env |= probe_env(probe)
        if server == "uvicorn":
            argv = [
                PY,
                "-m",
                "uvicorn",
                "playground.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws",
                "websockets",
                "--ws-max-size",
                "262144",
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        else:
            argv = [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if self.args.profile and name.startswith(self.args.profile):
            out = self.logs / f"{name}.pyspy.txt"
            argv = [
                shutil.which("py-spy") or str(Path(PY).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "-r",
                "200",
                "-o",
                str(out),
                "--",
                *argv,
            ]
        child = Child(name, argv, env, self.logs, cwd=root)
        self.children.append(child)
        wait_http(f"http://127.0.0.1:{port}/", child)
        return child, f"ws://127.0.0.1:{port}/ws"

    def server_pids(self, child: Child) -> list[int]:
        import psutil

        proc = psutil.Process(child.pid)
        if proc.name().startswith("py-spy"):
            return [c.pid for c in proc.children()]
        return [child.pid]

    def stop(self, child: Child) -> None:
        import signal

        import psutil

        with contextlib.suppress(Exception):
            if psutil.Process(child.pid).name().startswith("py-spy"):
                # Stop the profiled server first; py-spy then writes its profile and exits.
                for pid in self.server_pids(child):
                    os.kill(pid, signal.SIGINT)
                child.proc.wait(30)
        child.stop(timeout=20)
        with contextlib.suppress(ValueError):
            self.children.remove(child)

    def migrate(self) -> None:
        env = self.server_env("memory")
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )

    # --- cases ------------------------------------------------------------------------------------
    def tokens(self, case: Case, tag: str) -> dict[str, str]:
        return {str(i): self.keys.token(f"user_{tag}_{i}") for i in range(case.comparisons)}

    def workers(self, module: str, case: Case, base: dict[str, Any], tag: str) -> list[Any]:
        n = case.comparisons
        procs = 1 if n <= 60 or module != "bench.loadgen" else 2
        tokens = (
            self.tokens(case, tag) if module == "bench.loadgen" else {str(i): "" for i in range(n)}
        )
        # Start times uniform at random over the ramp (seeded): random phases against the
        # 50 ms delta period, so streams do not deliver in lock-step bursts.
        rng = random.Random(n)
        slot = {str(i): rng.random() if n > 1 else 0.0 for i in range(n)}
        out = []
        for p in range(procs):
            mine = {k: v for k, v in tokens.items() if int(k) % procs == p}
            cfg = {
                **base,
                "name": f"{tag}-w{p}",
                "tokens": mine,
                "slot": {k: slot[k] for k in mine},
                "tag_prefix": tag,
                "deltas": case.deltas,
                "delta_bytes": DELTA_BYTES,
                "scenario": case.scenario,
                "repeat": case.repeat,
            }
            out.append(run_worker(module, cfg, self.logs, 0))
        return out

    def collect(self, workers: list[Any], timeout: float) -> dict[str, Any]:
        merged: dict[str, Any] = {"comparisons": [], "failures": [], "cpu_s": 0.0}
        deadline = time.monotonic() + timeout
        for proc, out_path, log_path in workers:
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out_path.exists():
                data = json.loads(out_path.read_text())
                merged["comparisons"] += data["comparisons"]
                merged["failures"] += data["failures"]
                merged["cpu_s"] += data.get("cpu_s", 0.0)  # the workers' own, timed part only
            else:
                tail = log_path.read_text(errors="replace")[-800:]
                merged["failures"].append(f"worker failed: {tail}")
        return merged

    def run_case(self, case: Case, urls: tuple[str, str | None], pids: list[int]) -> Result:
        self.seq += 1
        tag = f"{self.prefix}c{self.seq}"
        result = Result(case)
        n = case.comparisons
        ramp = 0.0 if n == 1 else 1.0
        allowance = 1.5 + n * (0.012 if case.watch else 0.006)
        timeout = allowance + ramp + case.repeat * (case.deltas / case.rate + 0.2) + 25
        sampler = Sampler(pids) if pids else None
        counters = self.db.counters() if self.db and case.kind == "relay" else None
        go = self.logs / f"{tag}.go"
        base: dict[str, Any] = {"go": str(go), "ramp": ramp, "timeout": timeout + allowance}
        if case.kind == "relay":
            url, watch = urls[0], urls[1] if case.watch else None
            if case.transport == "sio":
                path = "/socket.io/?EIO=4&transport=websocket"
                url = url.removesuffix("/ws") + path
                watch = watch and watch.removesuffix("/ws") + path
            base |= {"url": url, "watch_url": watch, "transport": case.transport}
            module = "bench.loadgen"
        elif case.kind == "direct":
            base |= {"upstream": self.upstream_url}
            module = "bench.direct"
        else:
            base |= {"url": urls[0], "key": LITELLM_KEY}
            module = "bench.peer"
        slow: SlowReader | None = None
        rss_before = 0
        if case.slow_reader:
            rss_before = Sampler(pids).rss() if pids else 0
            slow = SlowReader(urls[0], self.keys.token(f"user_{tag}_slow"))
            slow.start()
        workers = self.workers(module, case, base, tag)
        # Every worker prepared (imports, warm-up, sockets open and authenticated), then one
        # common start time for all of them.
        deadline = time.monotonic() + 60 + allowance * 10
        ready = [Path(str(out) + ".ready") for _, out, _ in workers]
        while time.monotonic() < deadline and not all(r.exists() for r in ready):
            if any(proc.poll() is not None for proc, _, _ in workers):
                break
            time.sleep(0.01)
        start_at = time.monotonic() + 0.2
        staged = go.with_suffix(".staged")
        staged.write_text(repr(start_at))
        staged.rename(go)  # atomic: a worker never reads a half-written file
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0 = sampler.cpu() if sampler else 0.0
        if sampler:
            sampler.start()
        data = self.collect(workers, timeout + 30)
        end = time.monotonic()
        if sampler:
            cpu1 = sampler.cpu()
            if slow is None:  # else RSS is followed until the slow socket is gone
                sampler.stopped.set()
            result.cpu = 100 * (cpu1 - cpu0) / (end - start_at)
            result.cpu_s = cpu1 - cpu0
            result.rss = sampler.peak / 2**20
        records = http_json(f"{self.upstream_url}/_bench/requests?tag_prefix={tag}-")
        http_json(f"{self.upstream_url}/_bench/reset", {})  # each case starts with an empty record
        if counters is not None and self.db is not None:
            # PostgreSQL backends report statistics up to a second late (at exit or when idle):
            # read until two readings 0.5 s apart agree.
            time.sleep(1.0)
            after = self.db.counters()
            for _ in range(10):
                time.sleep(0.5)
                again = self.db.counters()
                if again == after:
                    break
                after = again
            result.db_rows = (after[0] - counters[0]) / case.total
            result.db_xacts = (after[1] - counters[1]) / case.total
        self.analyse(result, data, records)
        if slow is not None:
            slow.join(20)  # the server drops it 10 s after closing it (4008)
            slow.stopped.set()
            slow.join(5)
            rss_after = Sampler(pids).rss() if pids else 0
            mib = 2**20
            over_time = ""
            if sampler:
                sampler.stopped.set()
                result.rss = sampler.peak / mib
                # Server RSS every 2 s from the common start to the slow socket's end.
                series = sampler.series
                picked = [rss for t, rss in series if t >= start_at][::20]
                over_time = (
                    f"; RSS every 2 s: {', '.join(f'{r / mib:.0f}' for r in picked)} MiB "
                    f"(spread {(max(picked) - min(picked)) / mib:.0f} MiB)"
                    if picked
                    else ""
                )
            result.note = (
                f"slow socket: {slow.watches} watches of a 1.6 MB snapshot sent, "
                f"{slow.closed or 'still open'}; server RSS {rss_before / mib:.0f} -> "
                f"{rss_after / mib:.0f} MiB (peak {result.rss:.0f}){over_time}. {result.note}"
            ).strip()
        return result

    def analyse(self, result: Result, data: dict[str, Any], records: list[dict[str, Any]]) -> None:
        case = result.case
        upstream = {(r["tag"], r["vendor"]): r["delta_times"] for r in records}
        # Peak number of upstream streams open at once (request received .. last delta written).
        edges = sorted(
            [(r["started_at"], 1) for r in records if r["delta_times"]]
            + [(r["delta_times"][-1], -1) for r in records if r["delta_times"]]
        )
        level = 0
        for _, step in edges:
            level += step
            result.peak = max(result.peak, level)
        tag_prefix = records[0]["tag"].rsplit("-", 1)[0] if records else ""
        first_t, last_t = math.inf, 0.0
        seen = set()
        problems: list[str] = list(data["failures"])[:3]
        for cmp in data["comparisons"]:
            seen.add(cmp["i"])
            if cmp.get("session") is None and any(
                isinstance(e, dict) and e.get("reason") == "server-busy"
                for e in cmp.get("errors") or []
            ):
                result.refused += 1  # refused before admission: nothing was sent, nothing lost
                continue
            if cmp.get("errors"):
                problems.append(str(cmp["errors"][0])[:200])
            if any("closed by the server" in str(e) for e in cmp.get("errors") or []):
                result.closed += 1
            first_t = min(first_t, cmp["sent"])
            for key, info in cmp["models"].items():
                writes = upstream.get((f"{tag_prefix}-{cmp['i']}", VENDOR_OF_MODEL[key]), [])
                result.lost += info["lost"] + max(0, case.deltas - len(writes))
                result.dup += info["dup"]
                result.bad += info["order"] + info["text"]
                for idx, t in info["times"].items():
                    j = int(idx)
                    result.chunks += 1
                    last_t = max(last_t, t)
                    if j < len(writes):
                        lat = (t - writes[j]) * 1000
                        result.chunk.append(lat)
                        if j == 0:
                            result.ttft.append(lat)
                if "0" in info["times"]:
                    result.start_first.append((info["times"]["0"] - cmp["sent"]) * 1000)
            watch = cmp.get("watch")
            if watch is not None:
                result.watch_bad += watch["bad_snapshot"] + (0 if watch["snapshot"] else 1)
                for key, info in watch["models"].items():
                    writes = upstream.get((f"{tag_prefix}-{cmp['i']}", VENDOR_OF_MODEL[key]), [])
                    result.watch_bad += info["lost"] + info["dup"] + info["order"] + info["text"]
                    for idx, t in info["times"].items():
                        if int(idx) < len(writes):
                            result.watch_chunk.append((t - writes[int(idx)]) * 1000)
        # A socket that never opened sent no start: reported beside the loss, not in it.
        result.unopened = sum(1 for f in data["failures"] if str(f).startswith("connect:"))
        missing = case.total - len(seen) - result.unopened * case.repeat
        result.lost += max(0, missing) * 2 * case.deltas
        if last_t > first_t:
            result.chunks_per_s = result.chunks / (last_t - first_t)
        if problems:
            result.note = "; ".join(problems)[:300]

    def run_idle(self, case: Case) -> Result:
        result = Result(case)
        child, url = self.start_server("daphne", "memory", case.name)
        try:
            pids = self.server_pids(child)
            sampler = Sampler(pids)
            # Warm up: a few connections open and close first (imports, caches).
            warm = Case("warm", "relay", 10)
            self.run_case(warm, (url, None), [])
            time.sleep(1.0)
            before = sampler.rss()
            tag = f"{self.prefix}idle"
            release = self.logs / "idle.release"
            cfg = {
                "name": tag,
                "mode": "idle",
                "url": url,
                "release": str(release),
                "tokens": {str(i): self.keys.token(f"user_{tag}_{i}") for i in range(case.streams)},
            }
            proc, out_path, _ = run_worker("bench.loadgen", cfg, self.logs, 0)
            ready = Path(str(out_path) + ".ready")
            deadline = time.monotonic() + 120
            while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(2.0)
            opened = json.loads(ready.read_text())["open"] if ready.exists() else 0
            after = sampler.rss()
            release.write_text("")
            proc.wait(60)
            result.rss = after / 2**20
            if opened:
                result.per_idle_kib = (after - before) / opened / 1024
            result.note = (
                f"{opened} sockets open; RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
            )
            result.lost = case.streams - opened
        finally:
            self.stop(child)
        return result

    def start_litellm(self) -> tuple[Child, str]:
        port = free_port()
        config = self.logs / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: bench-claude\n"
            "    litellm_params:\n"
            f"      model: anthropic/{ANTHROPIC_MODEL}\n"
            f"      api_base: {self.upstream_url}\n"
            "      api_key: x\n"
            "  - model_name: bench-gemini\n"
            "    litellm_params:\n"
            f"      model: gemini/{GOOGLE_MODEL}\n"
            f"      api_base: {self.upstream_url}/v1beta\n"
            "      api_key: x\n"
            # As LiteLLM's own load-test guide and production checklist configure it: no
            # callbacks, no retries, no message or spend logging (the peer warms it up first).
            "litellm_settings:\n"
            "  drop_params: true\n"
            "  turn_off_message_logging: true\n"
            "  num_retries: 0\n"
            "  callbacks: []\n"
            "  success_callback: []\n"
            "  failure_callback: []\n"
            "  set_verbose: false\n"
            "router_settings:\n"
            "  num_retries: 0\n"
            "general_settings:\n"
            "  disable_spend_logs: true\n"
            "  disable_error_logs: true\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            LITELLM_MASTER_KEY=LITELLM_KEY,
            PYTHONUNBUFFERED="1",
        )
        exe = str(Path(PY).parent / "litellm")
        child = Child(
            "litellm",
            [
                exe,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            env,
            self.logs,
        )
        self.children.append(child)
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", child, within=120)
        return child, f"http://127.0.0.1:{port}"

    # --- driver -----------------------------------------------------------------------------------
    def run(self, cases: list[Case]) -> list[Result]:
        results: list[Result] = []
        if not self.upstream_url:  # the interleaved suite (bench/suite.py) may have started it
            self.start_upstream()
        if self.db is None and any(c.kind in ("relay", "idle") for c in cases):
            self.db = Database()
            self.migrate()
        current: tuple[Any, ...] | None = None
        servers: list[Child] = []
        urls: tuple[str, str | None] = ("", None)
        pids: list[int] = []
        try:
            for case in cases:
                print(f"[bench] {case.name} ...", flush=True)
                t0 = time.monotonic()
                key = (case.kind, case.server, case.layer)
                if key != current:
                    for child in servers:
                        self.stop(child)
                    servers, pids, urls = [], [], ("", None)
                    current = key
                    if case.kind == "relay":
                        a, url_a = self.start_server(case.server, case.layer, case.name)
                        servers.append(a)
                        url_b = None
                        if case.layer == "redis":
                            b, url_b = self.start_server(case.server, case.layer, case.name + "-b")
                            servers.append(b)
                        urls = (url_a, url_b)
                        pids = [p for s in servers for p in self.server_pids(s)]
                        # Warm-up (not recorded): lazy imports, SDK clients, connection pools.
                        warm = Case(
                            "warm",
                            "relay",
                            4,
                            layer=case.layer,
                            watch=case.watch,
                            scenario="warm",
                            deltas=4,
                            rate=1000.0,
                        )
                        self.run_case(warm, urls, [])
                    elif case.kind == "litellm":
                        try:
                            child, url = self.start_litellm()
                        except Exception as exc:
                            results.append(Result(case, note=f"not run: {exc}"[:300]))
                            current = None
                            continue
                        servers.append(child)
                        urls = (url, None)
                        pids = [child.pid]
                if case.kind == "idle":
                    result = self.run_idle(case)
                else:
                    result = self.run_case(case, urls, pids if case.kind != "direct" else [])
                results.append(result)
                print(
                    f"[bench]   done in {time.monotonic() - t0:.1f}s "
                    f"({cpu_per_chunk_us(result):.0f} µs server CPU per chunk): {row(result)}",
                    flush=True,
                )
        finally:
            for child in servers:
                self.stop(child)
        return results

    def close(self) -> None:
        for child in list(self.children):
            child.stop()
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.drop()


# --- report -----------------------------------------------------------------------------------------

HEADER = (
    "| case | streams | 1st chunk write→recv p50 / p99 (ms) | chunk write→recv p50 / p99 / max (ms)"
    " | request→1st chunk p50 / p99 (ms) | chunks/s | peak open streams | lost / dup / bad"
    " | server CPU % (of 1 core)"
    " | server RSS (MiB) | DB rows / xacts per comparison |"
)


def row(r: Result) -> str:
    c = r.case
    if c.kind == "idle":
        return (
            f"| {c.name} | {c.streams} idle | — | — | — | — | — | {r.lost} not opened | — "
            f"| {ms(r.rss)} "
            f"| **{r.per_idle_kib:.1f} KiB per idle connection** |"
        )
    if not r.chunk and r.note:
        return f"| {c.name} | {c.streams} | {r.note} |  |  |  |  |  |  |  |  |"
    db = "—" if math.isnan(r.db_rows) else f"{r.db_rows:.1f} / {r.db_xacts:.1f}"
    return (
        f"| {c.name} | {c.comparisons * 2} | {ms(pct(r.ttft, 50))} / {ms(pct(r.ttft, 99))} "
        f"| {ms(pct(r.chunk, 50))} / {ms(pct(r.chunk, 99))} / {ms(max(r.chunk, default=math.nan))} "
        f"| {ms(pct(r.start_first, 50))} / {ms(pct(r.start_first, 99))} "
        f"| {r.chunks_per_s:.0f} | {r.peak} | {r.lost} / {r.dup} / {r.bad}"
        f"{f' ({r.refused} starts refused: server busy)' if r.refused else ''}"
        f"{f' ({r.closed} sockets closed by the server)' if r.closed else ''}"
        f"{f' ({r.unopened} sockets not opened)' if r.unopened else ''} "
        f"| {'—' if math.isnan(r.cpu) else f'{r.cpu:.0f}'} | {ms(r.rss)} | {db} |"
    )


@dataclass
class Added:
    """What a case adds over the direct-SDK baseline at the same concurrency, same run."""

    result: Result
    ttft50: float
    ttft99: float
    chunk50: float
    chunk99: float
    chunkmax: float


def added(results: list[Result]) -> list[Added]:
    direct = {r.case.streams: r for r in results if r.case.kind == "direct" and r.chunk}
    out = []
    for r in results:
        base = direct.get(r.case.streams)
        if r.case.kind not in ("relay", "litellm") or base is None or not r.chunk:
            continue
        out.append(
            Added(
                r,
                pct(r.start_first, 50) - pct(base.start_first, 50),
                pct(r.start_first, 99) - pct(base.start_first, 99),
                pct(r.chunk, 50) - pct(base.chunk, 50),
                pct(r.chunk, 99) - pct(base.chunk, 99),
                max(r.chunk) - max(base.chunk),
            )
        )
    return out


def added_rows(rows: list[Added]) -> list[str]:
    return [
        f"| {a.result.case.name} | {a.result.case.comparisons * 2} "
        f"| {ms(a.ttft50)} / {ms(a.ttft99)} | {ms(a.chunk50)} / {ms(a.chunk99)} / {ms(a.chunkmax)} |"
        for a in rows
    ]


def cpu_per_chunk_us(r: Result) -> float:
    """Server CPU time per relayed chunk: all of the case's CPU (starts, saves, sockets
    included) over the chunks the starting sockets received."""
    return r.cpu_s / r.chunks * 1e6 if r.chunks else math.nan


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def targets(results: list[Result], rows: list[Added]) -> list[str]:
    lines = []
    by_name = {a.result.case.name: a for a in rows}
    by_result = {r.case.name: r for r in results}
    relay = [a for a in rows if a.result.case.kind == "relay"]
    for a in relay:
        if a.result.case.comparisons != 1:
            continue
        lines.append(
            f"- TTFT overhead p50 ≤ 1 ms (request→first chunk, relay - direct SDK, "
            f"{a.result.case.name}): {verdict(a.ttft50 <= 1)} — {ms(a.ttft50)} ms "
            f"(p99 {ms(a.ttft99)} ms)."
        )
    loaded = [a for a in relay if a.result.case.comparisons > 1]
    if loaded:
        worst = max(loaded, key=lambda a: a.ttft50)
        lines.append(
            f"- Under load the same difference reaches {ms(worst.ttft50)} ms "
            f"({worst.result.case.name}); see the table (a negative value means the single-process "
            "direct baseline was itself slower to start at that concurrency)."
        )
    for name in ("daphne-mem-400", "uvicorn-mem-400", "daphne-redis-watch-400"):
        if (hit := by_name.get(name)) is None:
            continue
        a = hit
        r = a.result
        sustained = r.peak >= 0.9 * r.case.streams
        added50, added99, against = a.chunk50, a.chunk99, "the direct baseline at 400"
        base, floor = by_result.get("direct-400"), by_result.get("direct-1")
        if base and floor and pct(base.chunk, 99) - pct(floor.chunk, 99) > 5:
            # The baseline process is saturated itself: a difference to it proves nothing.
            # Judge against the unloaded floor (direct-1) instead, and say so.
            added50 = pct(r.chunk, 50) - pct(floor.chunk, 50)
            added99 = pct(r.chunk, 99) - pct(floor.chunk, 99)
            against = (
                f"direct-1, because direct-400 is saturated itself: chunk p50 / p99 "
                f"{ms(pct(base.chunk, 50))} / {ms(pct(base.chunk, 99))} ms, "
                f"difference to it {ms(a.chunk50)} / {ms(a.chunk99)} ms"
            )
        lines.append(
            f"- Added per-chunk latency at 400 streams x 20 chunks/s ({name}): "
            f"p50 ≤ 0.5 ms {verdict(sustained and added50 <= 0.5)} ({ms(added50)} ms; "
            f"{ms(pct(r.chunk, 50))} ms write→receive), p99 ≤ 5 ms "
            f"{verdict(sustained and added99 <= 5)} ({ms(added99)} ms; "
            f"{ms(pct(r.chunk, 99))} ms write→receive); added = over {against}"
            + (
                ""
                if sustained
                else f"; the server never had more than {r.peak} of the {r.case.streams} "
                "streams open at once (starts queue), so 400 concurrent streams were not reached"
            )
            + "."
        )
    for r in results:
        ws = by_result.get(r.case.name.replace("-sio-", "-"))
        if r.case.transport != "sio" or ws is None or not r.chunks or not ws.chunks:
            continue
        sio_us, ws_us = cpu_per_chunk_us(r), cpu_per_chunk_us(ws)
        lines.append(
            f"- Socket.IO CPU per relayed chunk ≤ 1.3x /ws ({r.case.name} vs {ws.case.name}): "
            f"{verdict(sio_us <= 1.3 * ws_us and r.lost == 0)} — {sio_us:.0f} µs vs "
            f"{ws_us:.0f} µs ({sio_us / ws_us:.2f}x), {r.lost} lost."
        )
    measured = [r for r in results if r.case.kind != "idle" and (r.chunk or r.lost)]
    lost = [(r.case.name, r.lost + r.dup + r.bad + r.watch_bad) for r in measured]
    bad = [f"{n}: {k}" for n, k in lost if k]
    lines.append(
        f"- 0 lost / duplicated / out-of-order chunks in every case: {verdict(not bad)}"
        + (f" — {', '.join(bad)}." if bad else f" ({len(lost)} cases checked chunk by chunk).")
    )
    peers = [a for a in rows if a.result.case.kind == "litellm"]
    for p in peers:
        ours = by_name.get(p.result.case.name.replace("litellm", "daphne-mem"))
        if ours is None:
            continue
        if ours.ttft50 > 0:
            ratio = p.ttft50 / ours.ttft50
            judged = f"{verdict(ratio >= 5)} — ratio {ratio:.1f}x"
        else:
            judged = f"{verdict(p.ttft50 > 0)} — ours is at or below the direct baseline"
        lines.append(
            f"- TTFT overhead ≥ 5x lower than LiteLLM's ({p.result.case.comparisons * 2} streams): "
            f"{judged}: ours {ms(ours.ttft50)} ms, LiteLLM {ms(p.ttft50)} ms (request→first "
            f"chunk p50: ours {ms(pct(ours.result.start_first, 50))} ms over WebSocket, LiteLLM "
            f"{ms(pct(p.result.start_first, 50))} ms over SSE)."
        )
    for r in results:
        if r.case.kind == "idle":
            lines.append(
                f"- ≤ 64 KiB per idle authenticated connection: {verdict(r.per_idle_kib <= 64)} "
                f"— {r.per_idle_kib:.1f} KiB ({r.note})."
            )
    for r in results:
        if r.refused or r.closed or r.unopened:
            whole = r.lost + r.dup + r.bad == 0 and r.closed == 0
            lines.append(
                f"- Overload sheds starts, admitted comparisons stay whole ({r.case.name}): "
                f"{verdict(whole)} — {r.case.total - r.refused - r.unopened} admitted: "
                f"{r.lost} chunks lost, {r.closed} sockets closed by the server; "
                f"{r.refused} starts refused as server-busy, {r.unopened} sockets not opened."
            )
    off = by_result.get("daphne-mem-slowreader-200-off")
    slow = by_result.get("daphne-mem-slowreader-200")
    if off and slow and off.chunk and slow.chunk:
        moved = pct(slow.chunk, 99) - pct(off.chunk, 99)
        lines.append(
            f"- A never-reading socket does not slow the 100 normal ones (chunk p99 with it "
            f"vs without, same server, same run): {ms(pct(slow.chunk, 99))} vs "
            f"{ms(pct(off.chunk, 99))} ms ({'+' if moved >= 0 else ''}{ms(moved)} ms; p50 "
            f"{ms(pct(slow.chunk, 50))} vs {ms(pct(off.chunk, 50))} ms), "
            f"{slow.lost + slow.dup + slow.bad} lost/dup/bad; server peak RSS {ms(slow.rss)} vs "
            f"{ms(off.rss)} MiB."
        )
    normal = next((r for r in results if r.case.name == "daphne-mem-50"), None)
    dense = next((r for r in results if r.case.name == "daphne-mem-dense-50"), None)
    if normal and dense and not math.isnan(normal.db_rows) and not math.isnan(dense.db_rows):
        lines.append(
            f"- Database writes grow with models and seconds, never with chunks: "
            f"{verdict(dense.db_rows <= normal.db_rows * 1.25)} — {normal.db_rows:.1f} rows "
            f"written per comparison for 2 x {normal.case.deltas} chunks in "
            f"{normal.case.deltas / normal.case.rate:.1f} s, {dense.db_rows:.1f} for "
            f"2 x {dense.case.deltas} chunks in the same {dense.case.deltas / dense.case.rate:.1f} s."
        )
    return lines


def watch_rows(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.case.watch:
            lines.append(
                f"| {r.case.name} | {len(r.watch_chunk)} | {ms(pct(r.watch_chunk, 50))} | "
                f"{ms(pct(r.watch_chunk, 99))} | {ms(max(r.watch_chunk, default=math.nan))} | "
                f"{r.watch_bad} |"
            )
    return lines


def render(results: list[Result], command: str, info: dict[str, str], seconds: float) -> str:
    lines = [
        f"Machine: {info['nproc']} cores, {info['cpu']}, {info['memory']} RAM, Linux "
        f"{info['kernel']}, Python {info['python']}. Code: commit {info['commit']}. "
        f"Command: `{command}` "
        f"(whole matrix: {seconds:.0f} s).",
        "",
        HEADER,
        "|" + "---|" * 11,
    ]
    lines += [row(r) for r in results]
    rows = added(results)
    if rows:
        lines += [
            "",
            "What the relay (or LiteLLM) adds over the direct-SDK baseline at the same concurrency "
            "in this run (difference of percentiles, ms):",
            "",
            "| case | streams | TTFT overhead Δp50 / Δp99 | added per-chunk latency Δp50 / Δp99 / Δmax |",
            "|---|---|---|---|",
            *added_rows(rows),
        ]
    watch = watch_rows(results)
    if watch:
        lines += [
            "",
            "Watchers (second socket on the *other* server process, `watchSession` once the "
            "first chunk reached the starting socket; snapshot checked, then every later chunk; "
            "latency = watcher receive - upstream write):",
            "",
            "| case | chunks | p50 (ms) | p99 (ms) | max (ms) | lost/dup/bad/snapshot errors |",
            "|---|---|---|---|---|---|",
            *watch,
        ]
    lines += ["", "Targets:", "", *targets(results, rows)]
    notes = [f"- {r.case.name}: {r.note}" for r in results if r.note and r.case.kind != "idle"]
    if notes:
        lines += ["", "Notes from the run:", "", *notes]
    return "\n".join(lines)


def suite_section(table: str, suite: list[str], others: bool) -> str:
    """The interleaved comparison first (under the machine line), then the single-run cases."""
    head, _, rest = table.partition("\n\n")
    out = [head, "", *suite]
    if others:
        out += ["", "Single-run cases (one run each, no baseline in the same run):", "", rest]
    return "\n".join(out)


BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def write_doc(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 50 only (~30 s)")
    parser.add_argument(
        "--cases", nargs="*", help="case names or prefixes (e.g. daphne-mem direct-50)"
    )
    parser.add_argument("--out", help="update the results section of this Markdown file")
    parser.add_argument("--profile", help="run servers of cases with this prefix under py-spy")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    parser.add_argument(
        "--server-env",
        nargs="*",
        metavar="KEY=VALUE",
        help="extra environment for the server processes (e.g. DATABASE_CONN_MAX_AGE=60)",
    )
    extra_modes(parser)
    parser.add_argument(
        "--suite-levels",
        nargs="*",
        metavar="LEVEL",
        help="run only these levels of the interleaved comparison (ttft, 50, 200)",
    )
    parser.add_argument(
        "--suite-variants",
        nargs="*",
        metavar="VARIANT",
        help="run only these variants of it (lean, ws, floor, sio, sdk, litellm, ws-before)",
    )
    parser.add_argument(
        "--suite-before",
        metavar="DIR",
        help="a checkout of earlier code: its server runs beside the current one as variant "
        "ws-before (e.g. git worktree add --detach DIR COMMIT), a before/after in one run",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="repetitions of the interleaved comparison (default 5; 3 with --quick)",
    )
    args = parser.parse_args()
    if run_extra_mode(args):
        return
    litellm = not args.no_litellm and (Path(PY).parent / "litellm").exists()
    cases = matrix(args.quick, litellm)
    run_suite = True
    if args.cases:
        every = matrix(False, litellm)
        cases = [c for c in every if any(c.name.startswith(p) for p in args.cases)]
        run_suite = "suite" in args.cases
    bench = Bench(args)
    started = time.monotonic()
    print(f"[bench] logs in {bench.logs}", flush=True)
    suite = Suite(
        bench,
        quick=args.quick,
        reps=args.reps or (3 if args.quick else 5),
        litellm=litellm,
        case=Case,
        database=Database,
        litellm_key=LITELLM_KEY,
        only_levels=args.suite_levels,
        only_variants=args.suite_variants,
        before=Path(args.suite_before).resolve() if args.suite_before else None,
    )
    try:
        if run_suite:
            suite.execute()
        results = bench.run(cases) if cases else []
    finally:
        bench.close()
    command = "make bench" + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else "")
    seconds = time.monotonic() - started
    table = render(results, command, machine(), seconds)
    if run_suite:
        table = suite_section(table, Report(suite).render(seconds), bool(results))
    if not litellm and not args.quick:
        table += "\n\nLiteLLM: not run (the `litellm` proxy is not installed in this environment)."
    print(table)
    if args.out:
        write_doc(Path(args.out), table)
    if args.profile:
        for raw in bench.logs.glob("*.pyspy.txt"):
            from bench.profile import summary

            print(summary(raw))


if __name__ == "__main__":
    main()
