"""CPU per streamed event: the ``openai`` SDK's typed stream against the backend's lean reader.

``python -m bench.openai_parse [--streams 40] [--events 256] [--rounds 3]``: starts the fake
upstream in its own process (unpaced default scenario), then in this process runs ``--streams``
concurrent Chat Completions streams of ``--events`` deltas each, twice per round:

- ``sdk``: ``client.chat.completions.create(stream=True)``, iterating the SDK's
  ``ChatCompletionChunk`` objects (what a developer calling the SDK would write);
- ``lean``: ``OpenAIProvider._stream`` (the SDK sends the request; :mod:`providers.sse` and one
  ``json.loads`` per event read the body), the backend's hot path.

Prints this process's CPU time (``time.process_time``) per received event, best of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import PY, Child, free_port, wait_http

MODEL = "gpt-4.1-mini"


async def _sdk(client: object, prompt: str) -> int:
    import openai

    assert isinstance(client, openai.AsyncOpenAI)
    count = 0
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
    return count


async def _lean(provider: object, prompt: str) -> int:
    from providers.backends.openai import OpenAIProvider
    from providers.types import StreamRequest, TextDelta

    assert isinstance(provider, OpenAIProvider)
    count = 0
    async for event in provider._stream(StreamRequest(MODEL, prompt)):
        if type(event) is TextDelta:
            count += 1
    return count


async def _measure(run: Callable[[str], Awaitable[int]], streams: int, events: int) -> float:
    await asyncio.gather(*(run("warm-up") for _ in range(2)))
    started = time.process_time()
    counts = await asyncio.gather(*(run(f"stream {i}") for i in range(streams)))
    spent = time.process_time() - started
    assert counts == [events] * streams, counts
    return spent / (streams * events) * 1e6


async def _main(args: argparse.Namespace, url: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    django.setup()
    import openai

    from providers.backends.openai import OpenAIProvider

    options = {
        "api_key": "bench",
        "base_url": f"{url}/v1",
        "max_retries": 0,
        "first_token_timeout": 60,
        "idle_timeout": 60,
    }
    provider = OpenAIProvider("openai", options)
    client = openai.AsyncOpenAI(api_key="bench", base_url=f"{url}/v1", max_retries=0)
    results: dict[str, list[float]] = {"sdk": [], "lean": []}
    for _ in range(args.rounds):
        results["sdk"].append(await _measure(lambda p: _sdk(client, p), args.streams, args.events))
        results["lean"].append(
            await _measure(lambda p: _lean(provider, p), args.streams, args.events)
        )
    sdk, lean = min(results["sdk"]), min(results["lean"])
    print(f"{args.streams} streams x {args.events} events, best of {args.rounds} rounds")
    print(f"openai SDK typed stream : {sdk:6.1f} us CPU per event")
    print(f"lean SSE reader (backend): {lean:6.1f} us CPU per event ({sdk / lean:.1f}x less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--events", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    argv = [
        PY, "-m", "tests.fake_upstream", "--port", str(port), "--uvloop",
        "--deltas", str(args.events), "--delta-bytes", "16", "--rate", "0",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as logs:
        upstream = Child("fake-upstream", argv, dict(os.environ), Path(logs))
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/_bench/requests", upstream, within=30)
            asyncio.run(_main(args, url))
        finally:
            upstream.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
