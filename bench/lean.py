"""Lean direct baseline (its own process): ``python -m bench.lean <config.json>``.

The project's own provider backends (``providers/``: ``providers["google"]`` and
``providers["anthropic"]``, configured from the same environment as the server) called in one
process the way the server calls them, on the server's event loop set-up (uvloop, sniffio declared
once, the provider preload and the GC freeze of ``playground/startup.py``), consuming the same fake
upstream on the same ramp as the load generator. No Django request, channel layer, socket or
database: the difference to the server is what those add. Records ``time.monotonic()`` at every
text delta the backend yields.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ANTHROPIC_MODEL, GOOGLE_MODEL, rendezvous, scripted
from bench.direct import _check

monotonic = time.monotonic


async def _one_model(provider: Any, model: str, prompt: str, sink: list[Any]) -> None:
    from providers.types import StreamRequest, TextDelta

    append = sink.append
    async for event in provider.stream(StreamRequest(model=model, prompt=prompt)):
        if type(event) is TextDelta:
            append((monotonic(), event.text))


async def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    import sniffio

    from providers.registry import providers

    sniffio.thread_local.name = "asyncio"  # as playground.startup.process_start
    for error in providers.preload():
        raise RuntimeError(error)
    gc.collect()
    gc.freeze()
    google, anthropic = providers["google"], providers["anthropic"]
    expected = scripted(cfg["deltas"], cfg["delta_bytes"])

    async def one(i: int, warm: bool = False) -> dict[str, Any]:
        tag = f"{cfg['tag_prefix']}-{i}"
        marker = f" scenario:{cfg['scenario']}" if cfg.get("scenario") else ""
        prompt = f"bench:{tag}{marker} Say something."
        if warm:
            prompt = f"bench:{cfg['tag_prefix']}warm scenario:warm"
        delay = (
            0
            if warm
            else cfg["start_at"] + cfg["ramp"] * cfg["slot"].get(str(i), 0.0) - monotonic()
        )
        if delay > 0:
            await asyncio.sleep(delay)
        g_sink: list[Any] = []
        a_sink: list[Any] = []
        sent = monotonic()
        outcome = await asyncio.gather(
            _one_model(google, GOOGLE_MODEL, prompt, g_sink),
            _one_model(anthropic, ANTHROPIC_MODEL, prompt, a_sink),
            return_exceptions=True,
        )
        return {
            "i": i,
            "sent": sent,
            "errors": [repr(o) for o in outcome if isinstance(o, BaseException)],
            "done": "complete",
            "models": {
                GOOGLE_MODEL: _check(g_sink, expected),
                ANTHROPIC_MODEL: _check(a_sink, expected),
            },
        }

    await one(-1, warm=True)  # not recorded: connection pools, first-call paths
    await rendezvous(cfg)
    repeat = int(cfg.get("repeat", 1))

    async def in_a_row(k: int) -> list[dict[str, Any]]:
        return [await one(k * repeat + r) for r in range(repeat)]

    tasks = [asyncio.create_task(in_a_row(int(i))) for i in cfg["slot"]]
    done, pending = await asyncio.wait(tasks, timeout=cfg["timeout"])
    cfg["cpu1"] = time.process_time()
    for task in pending:
        task.cancel()
    failures = (
        [f"{len(pending)} comparisons unfinished after {cfg['timeout']:.0f}s"] if pending else []
    )
    results = []
    for task in done:
        if task.exception() is not None:
            failures.append(repr(task.exception()))
        else:
            results.extend(task.result())
    return {"comparisons": results, "failures": failures}


def job(cfg: dict[str, Any]) -> dict[str, Any]:
    from django.conf import settings

    if not settings.configured:
        os.environ.update(cfg["env"])
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
        import django
        import uvloop

        django.setup()
        uvloop.install()
    result = asyncio.run(_run(cfg))
    result["cpu_s"] = cfg.get("cpu1", 0.0) - cfg.get("cpu0", 0.0)
    return result


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(job(cfg)))


if __name__ == "__main__":
    main()
