"""How ``make test`` hands the suite to its xdist workers (``--dist loadfile``, refined).

Each test module stays on one worker, as with xdist's ``loadfile``, with two changes:
- the browser modules (``tests/web/browser``) are one unit, so one worker runs them all with one
  Playwright driver and one Chromium (a package-scoped fixture) instead of one per module;
- units that mostly wait (a token's expiry, an outage's timeouts) go out first, so that no
  worker is still waiting on them after the others have finished.
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

BROWSER_UNIT = "tests/web/browser"
FIRST = (BROWSER_UNIT, "tests/comparisons/test_outages.py")


class ModulesAndOneBrowserUnit(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        return BROWSER_UNIT if module.startswith(BROWSER_UNIT + "/") else module

    def _assign_work_unit(self, node: WorkerController) -> None:
        for scope in reversed(FIRST):
            if scope in self.workqueue:
                self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)
