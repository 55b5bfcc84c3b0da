"""The interleaved comparison (issue #17 items 1, 2, 5, 6): the server beside comparable baselines
in the same run, repeated, with intervals.

Variants, all consuming the same fake upstream on the same ramp (same random start slots):

- ``lean``: the project's own backends in one process (``bench/lean.py``: uvloop, GC freeze) —
  the baseline every "added" figure is measured against;
- ``ws`` and ``sio``: the real server (daphne, in-memory layer, PostgreSQL) over ``/ws`` and over
  Socket.IO's WebSocket transport, driven by ``bench.loadgen``;
- ``floor``: the minimal asyncio relay (``bench/floor.py``) driven by the same load generator;
- ``sdk``: the vendor SDKs used directly (``bench/direct.py``), a labelled reference only;
- ``litellm`` (first-token level only): LiteLLM's proxy with its SSE client (``bench/peer.py``).

Levels: ``ttft`` (one comparison at a time, many in a row, a 4-delta script: the first-token
figures), then 50 and 200 streams of 64 deltas at 20/s. Each level runs ``reps`` repetitions; in
each repetition every variant runs once, the order rotated by one per repetition, so baseline and
server alternate and a slow patch of the (shared) machine falls on all of them. The upstream's
request record is reset before every run.

Per run: request→first-chunk per stream, write→receive latency of every chunk after chunk 0,
chunk 0's own write→receive and the first token's timeline (request → upstream received it →
upstream wrote delta 0 → client received it), integrity per chunk (lost, duplicated, out of
order, wrong text), CPU seconds of every process (relay, clients, upstream) over the run, and the
machine's total busy CPU (to state what else ran).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import math
import os
import random
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import stats
from bench.common import (
    PY,
    ROOT,
    VENDOR_OF_MODEL,
    Child,
    _raise_nofile,
    free_port,
    http_json,
    probe_env,
    wait_http,
)

if TYPE_CHECKING:
    from bench.__main__ import Bench, Case

#: One saturation rule, applied to every run: a process that used this share of one core over
#: the run's streaming window cannot keep its event loop on time, so its latencies measure the
#: queue, not the relay. Such runs are marked and their level's latency targets are not judged.
SATURATED = 0.85
#: The same rule for the machine: when its cores were this busy over the run (whoever used them),
#: a ready event loop waited for a core, and latency measured that wait.
MACHINE_SATURATED = 0.90
TTFT_DELTAS = 4
LEAN = "lean"


@dataclass(frozen=True)
class Level:
    name: str
    comparisons: int  # at the same time
    repeat: int  # one after another on each socket, per repetition
    deltas: int
    scenario: str | None


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    module: str  # the client worker
    relay: str  # the process that does the relaying: server | floor | worker | litellm


VARIANTS = {
    "lean": Variant("lean", "lean direct (project backends, 1 process)", "bench.lean", "worker"),
    "ws": Variant("ws", "server /ws (daphne)", "bench.loadgen", "server"),
    "floor": Variant("floor", "floor relay (bench/floor.py)", "bench.loadgen", "floor"),
    "sio": Variant("sio", "server Socket.IO (daphne)", "bench.loadgen", "server"),
    "sdk": Variant("sdk", "SDK direct (reference)", "bench.direct", "worker"),
    "litellm": Variant("litellm", "LiteLLM proxy (SSE)", "bench.peer", "litellm"),
    "ws-before": Variant(
        "ws-before", "server /ws (daphne), code of --suite-before", "bench.loadgen", "before"
    ),
}


@dataclass
class Run:
    variant: str
    level: str
    rep: int
    streams: int = 0
    ttft: list[list[float]] = field(default_factory=list)  # per comparison, per model (ms)
    chunks: list[list[float]] = field(default_factory=list)  # index >= 1, per comparison (ms)
    phases: dict[str, list[list[float]]] = field(default_factory=dict)
    received: int = 0
    lost: int = 0
    dup: int = 0
    order: int = 0
    text: int = 0
    #: Chunks not received because the client stopped waiting at the run's deadline (the stream
    #: had not ended): too slow to measure, not lost; they are not verified either.
    late: int = 0
    problems: list[str] = field(default_factory=list)
    #: When each comparison's request left its client (``time.monotonic``), for the probe.
    sent: list[float] = field(default_factory=list)
    end: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    window: float = math.nan  # first request .. last chunk (s)
    busy_cores: float = math.nan  # the whole machine's busy CPU over the run, in cores
    multi: bool = False  # two client processes
    steal_cores: float = math.nan
    other_cores: float = math.nan

    def us_per_chunk(self, role: str) -> float:
        return (
            self.cpu[role] / self.received * 1e6 if role in self.cpu and self.received else math.nan
        )

    def load(self, role: str) -> float:
        """Share of one core the role's process(es) used over the streaming window."""
        if role not in self.cpu or not self.window or math.isnan(self.window):
            return math.nan
        return self.cpu[role] / self.window / (2 if role == "clients" and self.multi else 1)

    @property
    def saturated(self) -> list[str]:
        roles = [
            role
            for role in self.cpu
            if not math.isnan(self.load(role)) and self.load(role) >= SATURATED
        ]
        if self.busy_cores >= MACHINE_SATURATED * (os.cpu_count() or 1):
            roles.append("machine")
        return roles

    @property
    def faults(self) -> int:
        return self.lost + self.dup + self.order + self.text


def levels(quick: bool) -> list[Level]:
    if quick:
        return [Level("ttft", 1, 8, TTFT_DELTAS, "ttft"), Level("50", 25, 1, 64, None)]
    return [
        Level("ttft", 1, 20, TTFT_DELTAS, "ttft"),
        Level("50", 25, 1, 64, None),
        Level("200", 100, 1, 64, None),
    ]


def _cpu(pids: Iterable[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(Exception):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _busy() -> float:
    import psutil

    t = psutil.cpu_times()
    # guest time is already in user; steal (the hypervisor's other tenants) is reported apart.
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _steal() -> float:
    import psutil

    return float(getattr(psutil.cpu_times(), "steal", 0.0))


class Pool:
    """The persistent client workers (``bench.jobs``), one process per (module, index)."""

    def __init__(self, logs: Path, env: dict[str, dict[str, str]] | None = None) -> None:
        self.logs = logs
        self.env = env or {}  # per module: extra environment of its workers
        self.procs: dict[tuple[str, int], tuple[subprocess.Popen[bytes], Path]] = {}
        self.count: dict[tuple[str, int], int] = {}

    def worker(self, module: str, index: int) -> tuple[subprocess.Popen[bytes], Path]:
        key = (module, index)
        if key not in self.procs:
            jobs = self.logs / f"jobs-{module}-{index}"
            jobs.mkdir()
            with (self.logs / f"jobs-{module}-{index}.log").open("wb") as log:
                proc = subprocess.Popen(
                    [PY, "-m", "bench.jobs", module, str(jobs)],
                    cwd=ROOT,
                    env=os.environ | self.env.get(module, {}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_raise_nofile,
                )
            self.procs[key] = (proc, jobs)
            self.count[key] = 0
        return self.procs[key]

    def submit(self, module: str, index: int, cfg: dict[str, Any]) -> Path:
        _, jobs = self.worker(module, index)
        k = self.count[(module, index)]
        self.count[(module, index)] = k + 1
        out = jobs / f"{k}.result.json"
        staged = jobs / f"{k}.staged"
        staged.write_text(json.dumps({**cfg, "out": str(out)}))
        staged.rename(jobs / f"{k}.json")
        return out

    def alive(self) -> bool:
        return all(proc.poll() is None for proc, _ in self.procs.values())

    def collect(self, outs: list[Path], timeout: float) -> dict[str, Any]:
        merged: dict[str, Any] = {"comparisons": [], "failures": [], "cpu_s": 0.0}
        deadline = time.monotonic() + timeout
        for out in outs:
            while not out.exists() and time.monotonic() < deadline and self.alive():
                time.sleep(0.02)
            if not out.exists():
                merged["failures"].append(f"worker gave no result: {out.parent.name}")
                continue
            data = json.loads(out.read_text())
            merged["comparisons"] += data["comparisons"]
            merged["failures"] += data["failures"]
            merged["cpu_s"] += data.get("cpu_s", 0.0)
        return merged

    def close(self) -> None:
        for _proc, jobs in self.procs.values():
            (jobs / "stop").write_text("1")
        for proc, _ in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Suite:
    def __init__(
        self,
        bench: Bench,
        *,
        quick: bool,
        reps: int,
        litellm: bool,
        case: type[Case],
        database: Any,
        litellm_key: str,
        only_levels: list[str] | None = None,
        only_variants: list[str] | None = None,
        before: Path | None = None,
    ) -> None:
        # The harness's Case, Database and LiteLLM key are passed in: bench.__main__ imports
        # this module, so importing it back would be a cycle.
        self.case, self.database, self.litellm_key = case, database, litellm_key
        self.bench = bench
        self.quick = quick
        self.reps = reps
        self.litellm = litellm
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.children: list[Child] = []
        self.urls: dict[str, str] = {}
        self.pids: dict[str, list[int]] = {}
        #: The first-token probe's output of each relay (``bench/probe``): lean direct's worker
        #: and the servers write their events there when they stop.
        self.probes = {
            relay: bench.logs / f"probe-{relay}.json" for relay in ("worker", "server", "before")
        }
        self.pool = Pool(bench.logs, {"bench.lean": probe_env(self.probes["worker"])})
        self.only_levels = only_levels
        self.only_variants = only_variants
        self.before = before

    # --- processes --------------------------------------------------------------------------
    def start(self) -> None:
        bench = self.bench
        if not bench.upstream_url:
            bench.start_upstream()
        http_json(
            bench.upstream_url + "/_bench/scenario",
            {"id": "ttft", "deltas": TTFT_DELTAS, "delta_bytes": 16, "rate": 20.0},
        )
        if bench.db is None:
            bench.db = self.database()
            bench.migrate()
        # The client workers import Django and the SDKs while the server starts.
        for module in ("bench.loadgen", "bench.lean", "bench.direct"):
            self.pool.worker(module, 0)
        if not self.quick:
            self.pool.worker("bench.loadgen", 1)
        if self.litellm:
            self.pool.worker("bench.peer", 0)
        upstream = next(c for c in bench.children if c.name == "upstream")
        self.pids["upstream"] = [upstream.pid]
        server, url = bench.start_server(
            "daphne", "memory", "suite-daphne", probe=self.probes["server"]
        )
        self.children.append(server)
        self.urls["server"] = url
        self.pids["server"] = bench.server_pids(server)
        if self.before is not None:
            server, url = bench.start_server(
                "daphne", "memory", "suite-before", self.before, probe=self.probes["before"]
            )
            self.children.append(server)
            self.urls["before"] = url
            self.pids["before"] = bench.server_pids(server)
        port = free_port()
        floor = Child(
            "floor",
            [PY, "-m", "bench.floor", str(port), bench.upstream_url],
            os.environ.copy(),
            bench.logs,
        )
        bench.children.append(floor)
        self.children.append(floor)
        wait_http(f"http://127.0.0.1:{port}/", floor)
        self.urls["floor"] = f"ws://127.0.0.1:{port}/ws"
        self.pids["floor"] = [floor.pid]
        if self.litellm:
            try:
                child, lurl = bench.start_litellm()
                self.children.append(child)
                self.urls["litellm"] = lurl
                self.pids["litellm"] = [child.pid]
            except Exception as exc:
                self.notes.append(f"LiteLLM not run: {exc}"[:300])
        # Warm-up (not recorded) of both relays: lazy imports, connection pools, first calls.
        warm = self.case("warm", "relay", 4, scenario="warm", deltas=4, rate=1000.0)
        bench.run_case(warm, (self.urls["server"], None), [])
        if "before" in self.urls:
            bench.run_case(warm, (self.urls["before"], None), [])
        bench.run_case(warm, (self.urls["floor"], None), [])

    def stop(self) -> None:
        self.pool.close()
        for child in self.children:
            self.bench.stop(child)
        self.children.clear()

    # --- one run ----------------------------------------------------------------------------
    def variants(self, level: Level) -> list[str]:
        names = ["lean", "ws", "floor", "sio", "sdk"]
        if "before" in self.urls:
            names.insert(2, "ws-before")
        if level.name == "ttft" and "litellm" in self.urls:
            names.append("litellm")
        if self.only_variants:
            names = [n for n in names if n == LEAN or n in self.only_variants]
        return names

    def levels(self) -> list[Level]:
        every = levels(self.quick)
        return [lv for lv in every if not self.only_levels or lv.name in self.only_levels]

    def run(self, variant: str, level: Level, rep: int) -> Run:
        bench = self.bench
        v = VARIANTS[variant]
        bench.seq += 1
        tag = f"{bench.prefix}s{bench.seq}"
        http_json(bench.upstream_url + "/_bench/reset", {})
        kind = {"bench.loadgen": "relay", "bench.direct": "direct", "bench.peer": "litellm"}.get(
            v.module, "direct"
        )
        case = self.case(
            f"{variant}-{level.name}",
            kind,
            level.comparisons * 2,
            scenario=level.scenario,
            deltas=level.deltas,
            repeat=level.repeat,
            transport="sio" if variant == "sio" else "ws",
        )
        n = level.comparisons
        ramp = 0.0 if n == 1 else 1.0
        allowance = 1.5 + n * 0.006
        # Generous: it only matters when the machine is too slow, and then a late stream should
        # still be measured rather than cut off.
        timeout = allowance + ramp + level.repeat * (level.deltas / 20.0 + 0.3) + 60
        go = bench.logs / f"{tag}.go"
        base: dict[str, Any] = {"go": str(go), "ramp": ramp, "timeout": timeout + allowance}
        if v.module == "bench.loadgen":
            url = self.urls[v.relay]
            if variant == "sio":
                url = url.removesuffix("/ws") + "/socket.io/?EIO=4&transport=websocket"
            base |= {"url": url, "watch_url": None, "transport": case.transport}
        elif v.module == "bench.peer":
            base |= {"url": self.urls["litellm"], "key": self.litellm_key}
        else:
            base |= {"upstream": bench.upstream_url}
            if v.module == "bench.lean":
                base["env"] = bench.server_env("memory")
        outs = self.submit(v.module, case, base, tag)
        deadline = time.monotonic() + 120
        ready = [Path(str(out) + ".ready") for out in outs]
        while time.monotonic() < deadline and not all(r.exists() for r in ready):
            if not self.pool.alive():
                break
            time.sleep(0.01)
        roles = {"upstream": self.pids["upstream"]}
        if v.relay in ("server", "before", "floor", "litellm"):
            roles["relay"] = self.pids[v.relay]
        start_at = time.monotonic() + 0.2
        staged = go.with_suffix(".staged")
        staged.write_text(repr(start_at))
        staged.rename(go)
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0 = {role: _cpu(pids) for role, pids in roles.items()}
        busy0, steal0 = _busy(), _steal()
        data = self.pool.collect(outs, timeout + 30)
        busy1, steal1 = _busy(), _steal()
        end = time.monotonic()
        out = Run(variant, level.name, rep, streams=n * 2, multi=len(outs) > 1, end=end)
        out.cpu = {role: _cpu(pids) - cpu0[role] for role, pids in roles.items()}
        out.cpu["relay" if v.relay == "worker" else "clients"] = data.get("cpu_s", 0.0)
        records = http_json(f"{bench.upstream_url}/_bench/requests?tag_prefix={tag}-")
        last = self.analyse(out, case, data, records, tag)
        out.window = max(1e-3, (last or end) - start_at)
        wall = end - start_at
        out.busy_cores = (busy1 - busy0) / wall
        out.steal_cores = (steal1 - steal0) / wall
        # Busy CPU that none of the benchmark's processes used, over the same wall time.
        out.other_cores = max(0.0, busy1 - busy0 - sum(out.cpu.values())) / wall
        return out

    def analyse(
        self, out: Run, case: Any, data: dict[str, Any], records: list[dict[str, Any]], tag: str
    ) -> float:
        upstream = {(r["tag"], r["vendor"]): r for r in records}
        out.phases = {"to_upstream": [], "upstream": [], "back": [], "created": []}
        out.problems = list(data["failures"])[:3]
        seen = set()
        last = 0.0
        for cmp in data["comparisons"]:
            seen.add(cmp["i"])
            if cmp.get("errors"):
                out.problems.append(str(cmp["errors"][0])[:200])
            ttft: list[float] = []
            later: list[float] = []
            to_up: list[float] = []
            up: list[float] = []
            back: list[float] = []
            timed_out = any("no comparisonComplete" in str(e) for e in cmp.get("errors") or [])
            for key, info in cmp["models"].items():
                rec = upstream.get((f"{tag}-{cmp['i']}", VENDOR_OF_MODEL[key]))
                writes = rec["delta_times"] if rec else []
                missing_here = info["lost"] + max(0, case.deltas - len(writes))
                if timed_out:
                    out.late += missing_here
                else:
                    out.lost += missing_here
                out.dup += info["dup"]
                out.order += info["order"]
                out.text += info["text"]
                times = info["times"]
                out.received += len(times)
                for idx, t in times.items():
                    j = int(idx)
                    last = max(last, t)
                    if 0 < j < len(writes):
                        later.append((t - writes[j]) * 1000)
                if "0" in times:
                    t0 = times["0"]
                    ttft.append((t0 - cmp["sent"]) * 1000)
                    if rec and writes:
                        to_up.append((rec["started_at"] - cmp["sent"]) * 1000)
                        up.append((writes[0] - rec["started_at"]) * 1000)
                        back.append((t0 - writes[0]) * 1000)
            out.ttft.append(ttft)
            out.chunks.append(later)
            out.phases["to_upstream"].append(to_up)
            out.phases["upstream"].append(up)
            out.phases["back"].append(back)
            out.sent.append(cmp["sent"])
            created = cmp.get("created")  # the relays' sessionCreated, received
            out.phases["created"].append([(created - cmp["sent"]) * 1000] if created else [])
        missing = case.total - len(seen)
        unfinished = any("unfinished after" in f for f in data["failures"])
        if unfinished:  # the worker's deadline passed before these comparisons ended
            out.late += missing * 2 * case.deltas
        else:
            out.lost += missing * 2 * case.deltas
        if missing:
            out.problems.append(f"{missing} comparisons without a result")
        return last

    def submit(self, module: str, case: Case, base: dict[str, Any], tag: str) -> list[Path]:
        """The run's configurations to the persistent workers (as ``Bench.workers`` builds
        them: same tokens, same seeded start slots), two load generators above 60 comparisons."""
        n = case.comparisons
        loadgen = module == "bench.loadgen"
        procs = 2 if loadgen and n > 60 else 1
        tokens = self.bench.tokens(case, tag) if loadgen else {str(i): "" for i in range(n)}
        rng = random.Random(n)
        slot = {str(i): rng.random() if n > 1 else 0.0 for i in range(n)}
        outs = []
        for p in range(procs):
            mine = {k: v for k, v in tokens.items() if int(k) % procs == p}
            cfg = {
                **base,
                "name": f"{tag}-w{p}",
                "tokens": mine,
                "slot": {k: slot[k] for k in mine},
                "tag_prefix": tag,
                "deltas": case.deltas,
                "delta_bytes": 16,
                "scenario": case.scenario,
                "repeat": case.repeat,
            }
            outs.append(self.pool.submit(module, p, cfg))
        return outs

    # --- driver -----------------------------------------------------------------------------
    def execute(self) -> None:
        self.start()
        try:
            for level in self.levels():
                names = self.variants(level)
                for rep in range(self.reps):
                    k = rep % len(names)
                    for name in names[k:] + names[:k]:
                        t0 = time.monotonic()
                        run = self.run(name, level, rep)
                        self.runs.append(run)
                        print(
                            f"[bench] suite {level.name} rep {rep + 1}/{self.reps} {name}: "
                            f"{time.monotonic() - t0:.1f}s, ttft p50 "
                            f"{stats.quantile(stats.flat(run.ttft), 50):.2f} ms, chunk p50 "
                            f"{stats.quantile(stats.flat(run.chunks), 50):.2f} ms, "
                            f"{run.us_per_chunk('relay'):.0f} µs relay CPU/chunk, "
                            f"faults {run.faults}"
                            + (f", saturated: {run.saturated}" if run.saturated else "")
                            + (f", {run.problems[0]}" if run.problems else ""),
                            flush=True,
                        )
        finally:
            self.stop()
            # Every run's samples, for a second look at a run without running it again.
            with contextlib.suppress(OSError, TypeError):
                (self.bench.logs / "suite-runs.json").write_text(
                    json.dumps([dataclasses.asdict(r) for r in self.runs])
                )


# --- report -----------------------------------------------------------------------------------


def _pool(runs: list[Run], attr: str) -> list[list[float]]:
    return [c for r in runs for c in getattr(r, attr)]


def _phase(runs: list[Run], name: str) -> list[list[float]]:
    return [c for r in runs for c in r.phases.get(name, [])]


def _n(clusters: list[list[float]]) -> int:
    return sum(len(c) for c in clusters)


def _med(values: list[float]) -> float:
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def _f(value: float, digits: int = 2) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _us(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


def verdict(ok: bool | None) -> str:
    return "**not judged**" if ok is None else ("**met**" if ok else "**missed**")


class Report:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.by: dict[tuple[str, str], list[Run]] = {}
        for run in suite.runs:
            self.by.setdefault((run.level, run.variant), []).append(run)
        self.levels = [lv for lv in levels(suite.quick) if any(k[0] == lv.name for k in self.by)]

    def runs(self, level: str, variant: str) -> list[Run]:
        return self.by.get((level, variant), [])

    def diff(self, level: str, variant: str, attr: str, q: float) -> stats.Estimate:
        return stats.difference(
            _pool(self.runs(level, variant), attr), _pool(self.runs(level, LEAN), attr), q
        )

    def cpu_ratio(self, level: str, variant: str) -> stats.Estimate:
        mine = [r.us_per_chunk("relay") for r in self.runs(level, variant)]
        floor = [r.us_per_chunk("relay") for r in self.runs(level, "floor")]
        return stats.ratio_of_medians(mine, floor)

    def saturated(self, level: str, *compared: str) -> list[str]:
        """Saturated runs of ``compared`` (all variants when none is named) at ``level``."""
        out = []
        for (lv, v), runs in self.by.items():
            if lv == level and (not compared or v in compared):
                out += [
                    f"{v} rep {r.rep + 1}: {'+'.join(r.saturated)}" for r in runs if r.saturated
                ]
        return out

    # --- tables -----------------------------------------------------------------------------
    def main_table(self) -> list[str]:
        lines = [
            "| level | variant | runs x streams | request→1st chunk p50 / p99 (n) "
            "| chunk write→recv p50 / p99 (n; chunk 0 excluded) "
            "| CPU µs per relayed chunk: relay / clients / upstream "
            "| busiest process, % of 1 core (max over runs) | lost / dup / order / text | late |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in self.levels:
            for v in self.suite.variants(lv):
                runs = self.runs(lv.name, v)
                if not runs:
                    continue
                ttft = stats.flat(_pool(runs, "ttft"))
                chunk = stats.flat(_pool(runs, "chunks"))
                cpu = " / ".join(
                    _us(_med([r.us_per_chunk(role) for r in runs]))
                    for role in ("relay", "clients", "upstream")
                )
                busiest = max(
                    (r.load(role) for r in runs for role in r.cpu),
                    default=math.nan,
                )
                sat = sum(1 for r in runs if r.saturated)
                faults = (
                    f"{sum(r.lost for r in runs)} / {sum(r.dup for r in runs)} / "
                    f"{sum(r.order for r in runs)} / {sum(r.text for r in runs)}"
                )
                lines.append(
                    f"| {lv.name} | {VARIANTS[v].label} | {len(runs)} x {runs[0].streams} "
                    f"| {_f(stats.quantile(ttft, 50))} / {_f(stats.quantile(ttft, 99))} "
                    f"({ttft.size}) "
                    f"| {_f(stats.quantile(chunk, 50))} / {_f(stats.quantile(chunk, 99))} "
                    f"({chunk.size}) | {cpu} | {_f(100 * busiest, 0)}"
                    + (f" ({sat} saturated)" if sat else "")
                    + f" | {faults} | {sum(r.late for r in runs)} |"
                )
        return lines

    def diff_table(self) -> list[str]:
        lines = [
            "| level | variant | TTFT overhead Δp50 [95 % CI] | added per-chunk Δp50 [95 % CI] "
            "| added per-chunk Δp99 [95 % CI] | relay CPU per chunk ÷ floor's [95 % CI] |",
            "|---|---|---|---|---|---|",
        ]
        for lv in self.levels:
            for v in self.suite.variants(lv):
                if v == LEAN or not self.runs(lv.name, v):
                    continue
                ratio = self.cpu_ratio(lv.name, v) if v != "floor" else stats.Estimate(1.0)
                lines.append(
                    f"| {lv.name} | {VARIANTS[v].label} "
                    f"| {self.diff(lv.name, v, 'ttft', 50).fmt(' ms')} "
                    f"| {self.diff(lv.name, v, 'chunks', 50).fmt(' ms')} "
                    f"| {self.diff(lv.name, v, 'chunks', 99).fmt(' ms')} "
                    f"| {ratio.fmt('x')} |"
                )
        return lines

    def timeline(self) -> list[str]:
        level = "ttft"
        lean = self.runs(level, LEAN)
        if not lean:
            return []
        lines = [
            "| variant | request → upstream has the request | upstream: request → delta 0 written "
            "| delta 0 written → client has it | total request→1st chunk (n) "
            "| request → `sessionCreated` received |",
            "|---|---|---|---|---|---|",
        ]
        for v in self.suite.variants(Level("ttft", 1, 1, 1, None)):
            runs = self.runs(level, v)
            if not runs:
                continue
            cells = []
            for name in ("to_upstream", "upstream", "back"):
                mine = _phase(runs, name)
                value = stats.quantile(stats.flat(mine), 50)
                if v == LEAN:
                    cells.append(f"{_f(value)}")
                else:
                    d = stats.difference(mine, _phase(lean, name), 50)
                    cells.append(f"{_f(value)} (Δ {d.fmt()})")
            ttft = stats.flat(_pool(runs, "ttft"))
            created = stats.flat(_phase(runs, "created"))
            lines.append(
                f"| {VARIANTS[v].label} | "
                + " | ".join(cells)
                + f" | {_f(stats.quantile(ttft, 50))} ({ttft.size}) "
                + f"| {_f(stats.quantile(created, 50)) if created.size else '—'} |"
            )
        return lines

    def inside(self) -> list[str]:
        """The in-server timeline: the probe's events (``bench/probe``) of each comparison at the
        ``ttft`` level, as ms after its client sent the request (medians, n comparisons)."""
        level = "ttft"
        relay_of = {"lean": "worker", "ws": "server", "ws-before": "before", "sio": "server"}
        columns: list[tuple[str, dict[str, list[float]]]] = []
        for v in self.suite.variants(Level("ttft", 1, 1, 1, None)):
            path = self.suite.probes.get(relay_of.get(v, ""))
            runs = self.runs(level, v)
            if path is None or not runs or not path.exists():
                continue
            events = sorted((t, name) for t, name in json.loads(path.read_text()))
            times = [t for t, _ in events]
            offsets: dict[str, list[float]] = {}
            for run in runs:
                sent = sorted(run.sent)
                for i, t0 in enumerate(sent):
                    t1 = sent[i + 1] if i + 1 < len(sent) else run.end
                    first: dict[str, float] = {}
                    for t, name in events[
                        bisect.bisect_left(times, t0) : bisect.bisect_left(times, t1)
                    ]:
                        first.setdefault(name, t)
                    for name, t in first.items():
                        offsets.setdefault(name, []).append((t - t0) * 1000)
                # Seen from outside: the upstream's record and the client's first chunk.
                for name, per_comparison in (
                    ("upstream has the request", run.phases.get("to_upstream", [])),
                    ("client has chunk 0", run.ttft),
                ):
                    offsets.setdefault(name, []).extend(min(c) for c in per_comparison if c)
            columns.append((v, offsets))
        if len(columns) < 2:
            return []
        names = {name for _, offsets in columns for name in offsets}
        # In the order of the first relay's (the server's) timeline; lean direct has a subset.
        order = sorted(
            names,
            key=lambda name: next(
                (_med(o[name]) for v, o in columns if v != LEAN and name in o),
                _med(columns[0][1].get(name, [])),
            ),
        )
        lines = [
            "| event | " + " | ".join(VARIANTS[v].label for v, _ in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for name in order:
            cells = []
            for _, offsets in columns:
                values = offsets.get(name)
                median = _med(values) if values else math.nan
                cells.append(f"{_f(median)} ({len(values)})" if values else "—")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    # --- targets ----------------------------------------------------------------------------
    def targets(self, seconds: float) -> list[str]:
        lines = []
        top = "200" if any(lv.name == "200" for lv in self.levels) else self.levels[-1].name
        for v in ("ws", "sio"):
            ratio = self.cpu_ratio(top, v)
            if not math.isnan(ratio.value):
                lines.append(
                    f"- CPU per relayed chunk ≤ 1.5x the floor's ({VARIANTS[v].label}, {top} "
                    f"streams, same run): {verdict(ratio.value <= 1.5)} — {ratio.fmt('x')} "
                    f"({_us(_med([x.us_per_chunk('relay') for x in self.runs(top, v)]))} µs vs "
                    f"{_us(_med([x.us_per_chunk('relay') for x in self.runs(top, 'floor')]))} µs)."
                )
        for v in ("ws", "sio"):
            d = self.diff("ttft", v, "ttft", 50)
            if not math.isnan(d.value):
                n = _n(_pool(self.runs("ttft", v), "ttft"))
                sat = self.saturated("ttft", v, LEAN)
                lines.append(
                    f"- TTFT overhead p50 ≤ 1 ms vs lean direct ({VARIANTS[v].label}, one comparison "
                    f"at a time, {n} streams): {verdict(None if sat else d.value <= 1)} — "
                    f"{d.fmt(' ms')}"
                    + (f" ({len(sat)} saturated runs at this level)" if sat else "")
                    + (
                        "; where the time goes: the first-token timeline above."
                        if d.value > 1
                        else "."
                    )
                )
        for v in ("ws", "sio"):
            if not self.runs(top, v):
                continue
            p50, p99 = self.diff(top, v, "chunks", 50), self.diff(top, v, "chunks", 99)
            # A saturated reference (the SDK's) says nothing about the two runs compared here.
            sat = self.saturated(top, v, LEAN)
            judged = None if sat else True
            ok50 = None if judged is None else p50.value <= 0.5
            ok99 = None if judged is None else p99.value <= 5
            lines.append(
                f"- Added per-chunk latency vs lean direct at {top} streams x 20 chunks/s, one "
                f"process ({VARIANTS[v].label}): p50 ≤ 0.5 ms {verdict(ok50)} — {p50.fmt(' ms')}; "
                f"p99 ≤ 5 ms {verdict(ok99)} — {p99.fmt(' ms')}"
                + (
                    f" ({len(sat)} saturated runs at this level: {', '.join(sat[:6])})"
                    if sat
                    else ""
                )
                + "."
            )
        bad = []
        checked = late = 0
        for (lv, v), runs in self.by.items():
            for r in runs:
                checked += r.received
                late += r.late
                if r.faults:
                    bad.append(
                        f"{v}@{lv} rep {r.rep + 1}: {r.lost}/{r.dup}/{r.order}/{r.text}"
                        + (f" ({r.problems[0]})" if r.problems else "")
                    )
        lines.append(
            f"- 0 lost / duplicated / out-of-order / wrong chunks, every client incl. LiteLLM's: "
            f"{verdict(not bad)} — {checked} chunks checked one by one"
            + (f"; faults (lost/dup/order/text): {'; '.join(bad)}" if bad else "")
            + (
                f"; {late} chunks had not arrived when their client's deadline passed (streams "
                "still running in saturated runs: neither lost nor verified, column *late*)"
                if late
                else ""
            )
            + "."
        )
        if self.runs("ttft", "litellm"):
            lean, ours, peer = (
                _pool(self.runs("ttft", v), "ttft") for v in (LEAN, "ws", "litellm")
            )
            times = stats.ratio_of_differences(peer, ours, lean)
            mine, theirs = stats.difference(ours, lean, 50), stats.difference(peer, lean, 50)
            lines.append(
                f"- TTFT overhead ≥ 5x lower than LiteLLM's proxy (one comparison at a time, vs "
                f"lean direct): {verdict(times.value >= 5)} "
                f"— ratio {times.fmt('x', 1)}; ours {mine.fmt(' ms')}, LiteLLM {theirs.fmt(' ms')}."
            )
        else:
            lines.append(
                "- TTFT overhead ≥ 5x lower than LiteLLM's proxy: **not measured** in this run."
            )
        lines.append(f"- Matrix ≤ 15 minutes: {verdict(seconds <= 900)} — {seconds:.0f} s.")
        return lines

    def load(self) -> str:
        runs = self.suite.runs
        if not runs:
            return ""
        busy = [r.busy_cores for r in runs]
        others = [r.other_cores for r in runs]
        steal = [r.steal_cores for r in runs]
        return (
            f"Machine load during the runs (in cores; the machine has {os.cpu_count()}): busy "
            f"median {_f(_med(busy))}, max {_f(max(busy))}; of it, processes that are not part of "
            f"the benchmark (other engineers' work) median {_f(_med(others))}, max "
            f"{_f(max(others))}; CPU stolen by the hypervisor median {_f(_med(steal))}, max "
            f"{_f(max(steal))} (per run, over the run's wall time)."
        )

    def render(self, seconds: float) -> list[str]:
        suite = self.suite
        lines = [
            f"Interleaved comparison: {suite.reps} repetitions per level, variants in rotated "
            "order in each; percentiles pooled over the repetitions (n = samples); intervals: "
            f"cluster bootstrap over comparisons ({stats.RESAMPLES} resamples). Saturation rule: "
            f"a run where one process used ≥ {SATURATED:.0%} of one core over its streaming "
            f"window, or where the whole machine was ≥ {MACHINE_SATURATED:.0%} busy, is marked "
            "saturated, and a latency target is not judged when a run of either variant it compares "
            "(the server's or lean direct's) is saturated (the figures are still shown).",
            "",
            self.load(),
            "",
            *self.main_table(),
            "",
            "Differences to lean direct (same level, same run):",
            "",
            *self.diff_table(),
        ]
        timeline = self.timeline()
        if timeline:
            lines += [
                "",
                "First-token timeline at one comparison at a time (medians, ms; Δ = difference to "
                "lean direct with its 95 % interval):",
                "",
                *timeline,
            ]
        inside = self.inside()
        if inside:
            lines += [
                "",
                "Inside the processes, the same comparisons (the probe's timestamps, "
                "`bench/probe`: ms after the client sent the request, median (n comparisons); "
                "`http send` = the provider's request handed to its HTTP client):",
                "",
                *inside,
            ]
        lines += ["", "Targets:", "", *self.targets(seconds)]
        notes = list(suite.notes)
        for (lv, v), runs in self.by.items():
            notes += [f"{v}@{lv} rep {r.rep + 1}: {r.problems[0]}" for r in runs if r.problems]
        if notes:
            lines += ["", "Notes from the run:", "", *(f"- {n}" for n in notes[:20])]
        return lines
