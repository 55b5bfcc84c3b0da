"""Peer (its own process): an SSE client of LiteLLM's proxy in front of the same fake upstream.

``python -m bench.peer <config.json>``: per "comparison" two ``POST /chat/completions``
(``stream: true``) requests, one per model alias (Gemini, Claude), on the same ramp as the load
generator; records ``time.monotonic()`` for every SSE event carrying delta text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ANTHROPIC_MODEL, GOOGLE_MODEL, rendezvous, scripted

monotonic = time.monotonic
ALIASES = {GOOGLE_MODEL: "bench-gemini", ANTHROPIC_MODEL: "bench-claude"}


async def _stream(
    client: httpx.AsyncClient, url: str, alias: str, prompt: str, sink: list[Any]
) -> None:
    """Record every ``data:`` line raw with its receive time; parsed after the run (``_texts``),
    so no JSON is parsed while other streams are being timed."""
    body = {"model": alias, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return
            sink.append((monotonic(), line))


def _texts(sink: list[Any]) -> list[Any]:
    """(time, text) for every event carrying delta text."""
    out = []
    for now, line in sink:
        data = json.loads(line[6:])
        for choice in data.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                out.append((now, text))
    return out


def _check(sink: list[Any], expected: list[str]) -> dict[str, Any]:
    """Chunk by chunk, as the load generator checks the relay: the i-th text event must be the
    i-th scripted delta (a proxy that merged, split, repeated or dropped deltas fails here)."""
    texts = _texts(sink)
    bad = sum(1 for i, (_, text) in enumerate(texts) if i >= len(expected) or text != expected[i])
    return {
        "times": {str(i): t for i, (t, _) in enumerate(texts)},
        "dup": max(0, len(texts) - len(expected)),
        "order": 0,
        "text": bad,
        "lost": max(0, len(expected) - len(texts)),
        "complete": len(texts) == len(expected) and not bad,
    }


async def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    expected = scripted(cfg["deltas"], cfg["delta_bytes"])
    url = cfg["url"].rstrip("/") + "/chat/completions"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    headers = {"Authorization": f"Bearer {cfg['key']}"}
    async with httpx.AsyncClient(timeout=120.0, limits=limits, headers=headers) as client:

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
            sinks: dict[str, list[Any]] = {GOOGLE_MODEL: [], ANTHROPIC_MODEL: []}
            sent = monotonic()
            outcome = await asyncio.gather(
                *(_stream(client, url, ALIASES[m], prompt, sinks[m]) for m in sinks),
                return_exceptions=True,
            )
            return {
                "i": i,
                "sent": sent,
                "errors": [repr(o) for o in outcome if isinstance(o, BaseException)],
                "done": "complete",
                "raw": sinks,  # checked after the run
            }

        # Warm-up (not recorded): imports, pydantic models, connection pools.
        await one(-1, warm=True)
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
            [f"{len(pending)} comparisons unfinished after {cfg['timeout']:.0f}s"]
            if pending
            else []
        )
        results = []
        for task in done:
            if task.exception() is not None:
                failures.append(repr(task.exception()))
            else:
                results.extend(task.result())
    for result in results:
        sinks = result.pop("raw")
        result["models"] = {m: _check(sinks[m], expected) for m in sinks}
    return {"comparisons": results, "failures": failures}


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(job(cfg)))


def job(cfg: dict[str, Any]) -> dict[str, Any]:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_run(cfg))
    result["cpu_s"] = cfg.get("cpu1", 0.0) - cfg.get("cpu0", 0.0)
    return result


if __name__ == "__main__":
    main()
