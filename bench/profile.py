"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: top functions by own and
inclusive share of samples."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

_IDLE = ("thread.py:81)", "_sweep_forever", "select (selectors.py", "Connection.wait (psycopg")


def summary(path: Path, top: int = 40) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # Keep the serving work: no start-up imports, no idle waits.
        if any("_find_and_load" in f for f in frames) or any(idle in frames[-1] for idle in _IDLE):
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [
        f"== {path.name}: {total} samples",
        "-- own time (start-up imports and idle waits excluded)",
    ]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["-- inclusive"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summary(Path(arg)))
