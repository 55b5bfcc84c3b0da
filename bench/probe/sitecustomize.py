"""The first-token probe: timestamps inside a benchmarked process (issue #17 item 6).

Loaded by Python at start-up when ``bench/probe`` is on ``PYTHONPATH`` and
``BENCH_PROBE_OUT`` names a file. As each module below is imported, the probe wraps a few
functions of the start path so that every call appends ``(time.monotonic(), event)`` to a list;
the list is written to ``BENCH_PROBE_OUT`` as JSON when the process exits. ``time.monotonic`` is
system-wide on Linux, so the bench places these events on the client's and the upstream's own
timeline (``bench.suite``, the in-server timeline).

Nothing here runs per relayed chunk: the wrapped functions run once per inbound frame, once per
start and once per upstream request. Events carry no key: the bench assigns them to the
comparison in flight, which is only defined when one comparison runs at a time (the ``ttft``
level).
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

OUT = os.environ.get("BENCH_PROBE_OUT", "")
EVENTS: list[tuple[float, str]] = []
now = time.monotonic


def _wrap(owner: Any, name: str, enter: str | None, leave: str | None) -> None:
    fn = getattr(owner, name)
    record = EVENTS.append
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            if enter:
                record((now(), enter))
            try:
                return await fn(*args, **kwargs)
            finally:
                if leave:
                    record((now(), leave))

        setattr(owner, name, awrapper)
        return

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if enter:
            record((now(), enter))
        try:
            return fn(*args, **kwargs)
        finally:
            if leave:
                record((now(), leave))

    setattr(owner, name, wrapper)


def _send(owner: Any) -> None:
    """``AsyncClient.send``: the provider's request is built and handed to its HTTP client."""
    fn = owner.send
    record = EVENTS.append

    @functools.wraps(fn)
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        record((now(), "http send " + str(request.url.path).rsplit("/", 1)[-1].split(":")[-1]))
        return await fn(self, request, *args, **kwargs)

    owner.send = send


def _daphne(module: ModuleType) -> None:
    _wrap(module.WebSocketProtocol, "onMessage", "daphne has the frame", None)


def _accounts(module: ModuleType) -> None:
    _wrap(module.AuthenticatedJsonConsumer, "receive", "consumer task has the frame", None)


def _consumers(module: ModuleType) -> None:
    _wrap(module.ComparisonConsumer, "on_startComparison", "consumer has the start", None)


def _services(module: ModuleType) -> None:
    _wrap(module, "comparison_create", "admission begins (database thread)", "admission committed")


def _core(module: ModuleType) -> None:
    _wrap(module.Connection, "start", "start frame valid", None)
    _wrap(module.LiveComparisons, "launch", "launch", "admitted, back on the loop")
    _wrap(module, "session_created", None, "sessionCreated sent")


def _httpx(module: ModuleType) -> None:
    _send(module.AsyncClient)


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "daphne.ws_protocol": _daphne,
    "accounts.consumers": _accounts,
    "comparisons.consumers": _consumers,
    "comparisons.services": _services,
    "comparisons.live.core": _core,
    "httpx": _httpx,
    "httpx2": _httpx,
}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self.inner, self.patch = inner, patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader, patch)
        return spec


def _dump() -> None:
    with open(OUT, "w") as f:
        json.dump(EVENTS, f)


if OUT:
    sys.meta_path.insert(0, _Finder())
    atexit.register(_dump)
