"""A worker that stays up for many runs: ``python -m bench.jobs <module> <job dir>``.

Imports ``module`` (``bench.loadgen``, ``bench.lean``, ``bench.direct``, ``bench.peer``) once,
then runs ``module.job(cfg)`` for ``0.json``, ``1.json``, … as they appear in the job directory,
writing each result to its ``cfg["out"]``, until ``stop`` appears. On a busy 2-core machine a
fresh process per run spent 20-35 s importing Django and the SDKs; the interleaved comparison
(bench/suite.py) runs dozens of runs, so its workers are started once.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path


def main() -> None:
    module = importlib.import_module(sys.argv[1])
    jobs = Path(sys.argv[2])
    (jobs / "started").write_text("1")
    k = 0
    while True:
        path = jobs / f"{k}.json"
        while not path.exists():
            if (jobs / "stop").exists():
                return
            time.sleep(0.02)
        cfg = json.loads(path.read_text())
        try:
            result = module.job(cfg)
        except Exception as exc:  # reported, and the worker stays up for the next run
            result = {"comparisons": [], "failures": [f"{type(exc).__name__}: {exc}"]}
        out = Path(cfg["out"])
        staged = out.with_suffix(".staged")
        staged.write_text(json.dumps(result))
        staged.rename(out)
        k += 1


if __name__ == "__main__":
    main()
