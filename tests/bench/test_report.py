"""The interleaved comparison's report (bench/suite.py) and the first-token probe (bench/probe):
what docs/benchmarks.md's verdicts and in-server timeline rest on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from bench.common import ROOT, probe_env
from bench.suite import Report, Run, Suite


def _suite(tmp_path: Path, runs: list[Run]) -> Suite:
    bench = SimpleNamespace(logs=tmp_path)
    suite = Suite(
        bench,  # type: ignore[arg-type]
        quick=False,
        reps=5,
        litellm=False,
        case=object,  # type: ignore[arg-type]
        database=object,
        litellm_key="",
    )
    suite.runs = runs
    return suite


def _run(variant: str, level: str, rep: int, *, chunk_ms: float, busy: float = 0.1) -> Run:
    # 20 comparisons of 2 streams; the relay used ``busy`` of one core over a 10 s window.
    return Run(
        variant,
        level,
        rep,
        streams=40,
        ttft=[[5.0, 5.0] for _ in range(20)],
        chunks=[[chunk_ms + 0.01 * (i % 7) for i in range(60)] for _ in range(20)],
        received=2560,
        cpu={"relay": busy * 10.0},
        window=10.0,
    )


def _latency_verdict(report: Report) -> str:
    return next(line for line in report.targets(100.0) if "server /ws" in line and "p99" in line)


def test_a_saturated_reference_does_not_stop_the_server_being_judged(tmp_path: Path) -> None:
    runs = [
        run
        for rep in range(5)
        for run in (
            _run("lean", "200", rep, chunk_ms=0.3),
            _run("ws", "200", rep, chunk_ms=60.0),
            _run("sdk", "200", rep, chunk_ms=500.0, busy=0.97),
        )
    ]
    line = _latency_verdict(Report(_suite(tmp_path, runs)))
    assert "p50 ≤ 0.5 ms **missed**" in line
    assert "p99 ≤ 5 ms **missed**" in line
    assert "saturated" not in line


def test_a_saturated_baseline_leaves_the_latency_targets_unjudged(tmp_path: Path) -> None:
    runs = [
        run
        for rep in range(5)
        for run in (
            _run("lean", "200", rep, chunk_ms=0.3, busy=0.9 if rep == 2 else 0.1),
            _run("ws", "200", rep, chunk_ms=60.0),
        )
    ]
    line = _latency_verdict(Report(_suite(tmp_path, runs)))
    assert line.count("**not judged**") == 2
    assert "lean rep 3: relay" in line


def test_the_in_server_timeline_places_each_event_after_its_comparisons_request(
    tmp_path: Path,
) -> None:
    suite = _suite(tmp_path, [])
    runs = []
    server_events: list[tuple[float, str]] = [(0.5, "daphne has the frame")]  # the warm-up's
    lean_events: list[tuple[float, str]] = []
    for rep in range(2):
        base = 1000.0 * (rep + 1)
        for variant, events in (("lean", lean_events), ("ws", server_events)):
            run = Run(variant, "ttft", rep, streams=2, end=base + 100.0)
            for i in range(5):
                sent = base + i * 10.0 + (50.0 if variant == "ws" else 0.0)
                run.sent.append(sent)
                run.ttft.append([9.0, 8.0 + i])  # the first of the two models: 8, 9, 9, 9, 9
                run.phases.setdefault("to_upstream", []).append([6.0, 7.0])
                if variant == "ws":
                    events += [
                        (sent + 0.0004, "daphne has the frame"),
                        (sent + 0.003, "admission committed"),
                        (sent + 0.0031, "admission committed"),  # only the first one counts
                    ]
                else:
                    events.append((sent + 0.002, "http send messages"))
            runs.append(run)
    suite.runs = runs
    suite.probes["server"].write_text(json.dumps(server_events))
    suite.probes["worker"].write_text(json.dumps(lean_events))

    table = Report(suite).inside()

    assert table[0] == "| event | lean direct (project backends, 1 process) | server /ws (daphne) |"
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    assert list(rows) == [
        "daphne has the frame",
        "http send messages",
        "admission committed",
        "upstream has the request",
        "client has chunk 0",
    ]
    assert rows["daphne has the frame"] == "| daphne has the frame | — | 0.40 (10) |"
    assert rows["admission committed"] == "| admission committed | — | 3.00 (10) |"
    assert rows["http send messages"] == "| http send messages | 2.00 (10) | — |"
    assert rows["client has chunk 0"] == "| client has chunk 0 | 9.00 (10) | 9.00 (10) |"


def test_the_probe_records_a_providers_request_in_a_process_it_is_loaded_into(
    tmp_path: Path,
) -> None:
    out = tmp_path / "probe.json"
    script = (
        "import asyncio, httpx\n"
        "async def main():\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        try:\n"
        "            await client.get('http://127.0.0.1:9/v1beta/models/m:streamGenerateContent')\n"
        "        except httpx.ConnectError:\n"
        "            pass\n"
        "asyncio.run(main())\n"
    )
    env = os.environ | probe_env(out)
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=60)
    events = json.loads(out.read_text())
    assert [name for _, name in events] == ["http send streamGenerateContent"]
