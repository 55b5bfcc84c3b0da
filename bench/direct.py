"""Baseline (its own process): the same SDKs consuming the fake upstream directly, no server.

``python -m bench.direct <config.json>``: per "comparison" one Gemini and one Anthropic stream,
through each SDK's own streaming method (what a developer calling the SDKs would write), with the
connection limits ``providers/backends`` use (1,000; httpx's default of 100 would hold Gemini
streams back above 100), started on the same ramp as the load generator; records
``time.monotonic()`` at every yielded text delta.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
from google import genai
from google.genai import types

from bench.common import ANTHROPIC_MODEL, GOOGLE_MODEL, rendezvous, scripted

monotonic = time.monotonic


async def _anthropic(client: anthropic.AsyncAnthropic, prompt: str, sink: list[Any]) -> None:
    stream = await client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=4096,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
    )
    async with stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                sink.append((monotonic(), event.delta.text))
            elif event.type == "message_stop":
                break


async def _gemini(client: genai.Client, prompt: str, sink: list[Any]) -> None:
    chunks = await client.aio.models.generate_content_stream(
        model=GOOGLE_MODEL,
        contents=prompt,
        config=types.GenerateContentConfig(
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
        ),
    )
    async for chunk in chunks:
        for candidate in chunk.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.text and not part.thought:
                    sink.append((monotonic(), part.text))


def _check(sink: list[Any], expected: list[str]) -> dict[str, Any]:
    times = {str(i): t for i, (t, _) in enumerate(sink)}
    bad = sum(1 for i, (_, text) in enumerate(sink) if i >= len(expected) or text != expected[i])
    return {
        "times": times,
        "dup": max(0, len(sink) - len(expected)),
        "order": 0,
        "text": bad,
        "lost": max(0, len(expected) - len(sink)),
        "complete": len(sink) == len(expected),
    }


async def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    url = cfg["upstream"]
    expected = scripted(cfg["deltas"], cfg["delta_bytes"])
    a_client = anthropic.AsyncAnthropic(api_key="x", base_url=url, timeout=60.0, max_retries=0)
    g_client = genai.Client(
        api_key="x",
        http_options=types.HttpOptions(
            base_url=url,
            timeout=60_000,
            httpx_async_client=httpx.AsyncClient(
                timeout=60.0,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            ),
        ),
    )

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
            _gemini(g_client, prompt, g_sink),
            _anthropic(a_client, prompt, a_sink),
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
        [f"{len(pending)} comparisons unfinished after {cfg['timeout']:.0f}s"] if pending else []
    )
    results = []
    for task in done:
        if task.exception() is not None:
            failures.append(repr(task.exception()))
        else:
            results.extend(task.result())
    return {"comparisons": results, "failures": failures}


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(job(cfg)))


def job(cfg: dict[str, Any]) -> dict[str, Any]:
    # Plain asyncio: what a developer calling the SDKs gets (the labelled SDK reference; the lean
    # baseline, bench/lean.py, has the server's loop set-up).
    result = asyncio.run(_run(cfg))
    result["cpu_s"] = cfg.get("cpu1", 0.0) - cfg.get("cpu0", 0.0)
    return result


if __name__ == "__main__":
    main()
