"""Live terminal display of a running comparison, for the ``compare`` and ``replay`` commands."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TextIO

from comparisons.events import Metrics
from comparisons.live.run import ComparisonRun
from comparisons.playback import Playback

REFRESH_SECONDS = 0.2


def _line(slot: Any, elapsed: float) -> str:
    metrics = slot.metrics
    if isinstance(metrics, Metrics):  # a live run's; a replay's are their saved wire form
        metrics = metrics.wire()
    tokens = (metrics or {}).get("outputTokens")
    tokens_text = f"{tokens} tok" if tokens is not None else "… tok"
    status = slot.status
    if slot.error and status != "complete":
        status = f"{status}: {slot.error}"
    chars = sum(len(c) for c in slot.chunks)
    return f"  {slot.key:<36} {chars:>7} chars  {tokens_text:>9}  {elapsed:6.1f}s  {status}"


async def display_live(run: ComparisonRun | Playback, out: TextIO) -> None:
    """Redraw one line per model until the run ends (plain lines when not a terminal)."""
    start = time.monotonic()
    tty = out.isatty()
    drawn = 0
    last: list[str] = []
    while True:
        finished = run.done.is_set()
        elapsed = time.monotonic() - start
        lines = [_line(slot, elapsed) for slot in run.slots]
        if tty:
            if drawn:
                out.write(f"\x1b[{drawn}F")
            out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        else:
            # Only print when a model's status changes (or once at the end), to keep logs short.
            states = [f"{s.key}:{s.status}" for s in run.slots]
            if states != last or finished:
                out.write("".join(f"{line}\n" for line in lines))
                last = states
        out.flush()
        if finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.done.wait(), timeout=REFRESH_SECONDS)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    return format(value, spec)


def _metrics_line(label: str, status: str, m: dict[str, Any]) -> str:
    return (
        f"{label:<36} {status:<10} {_fmt(m.get('timeToFirstTokenInMilliseconds'), '9.0f')} "
        f"{_fmt(m.get('durationInMilliseconds'), '9.0f')} {_fmt(m.get('inputTokens'), '6d')} "
        f"{_fmt(m.get('outputTokens'), '6d')} {_fmt(m.get('tokensPerSecond'), '7.1f')} "
        f"{_fmt(m.get('estimatedCost'), '10.6f')}"
    )


def summary_table(rows: list[dict[str, Any]], original: dict[str, dict[str, Any]] | None) -> str:
    """A side-by-side table of metrics; for replays each model's original run sits under it,
    and original models the replay did not run follow as ``original <key>`` rows."""
    header = f"{'model':<36} {'status':<10} {'ttft ms':>9} {'dur ms':>9} {'in':>6} {'out':>6} {'tok/s':>7} {'cost $':>10}"
    lines = [header, "-" * len(header)]
    original = original or {}
    for row in rows:
        lines.append(_metrics_line(row["key"], row["status"], row.get("metrics") or {}))
        before = original.get(row["key"])
        if before is not None:
            lines.append(_metrics_line("  original", before["status"], before.get("metrics") or {}))
    replayed = {row["key"] for row in rows}
    for key, before in original.items():
        if key not in replayed:
            label = f"original {key}"
            lines.append(_metrics_line(label, before["status"], before.get("metrics") or {}))
    return "\n".join(lines)
