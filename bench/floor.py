"""The floor: the least a relay of this design can do, ``python -m bench.floor <port> <upstream>``.

One asyncio process on uvloop, with the server's GC freeze: a WebSocket server (``websockets``,
no compression) speaking the ``/ws`` dialect the load generator reads (``authenticated``,
``sessionCreated``, ``modelChunk``, ``modelComplete``, ``comparisonComplete``). For each
``startComparison`` it opens one plain HTTP/1.0 connection per model to the upstream (no client
library, the body ends at EOF), reads the event stream with the project's lean reader
(``providers/sse.py``), runs one ``json.loads`` per event and one ``json.dumps`` per chunk, and
sends it. No authentication (the server checks the token once per socket, not per chunk), no
database, no channel layer, no validation: its CPU per chunk is the physical limit the server's is
compared with (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import sys
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, serve

from bench.common import ANTHROPIC_MODEL, GOOGLE_MODEL
from providers.sse import sse_data

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
loads = json.loads
_ids = itertools.count(1)


async def _body(reader: asyncio.StreamReader) -> AsyncGenerator[bytes, None]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise RuntimeError(head[:80].decode(errors="replace"))
    while chunk := await reader.read(65536):
        yield chunk


async def _upstream(host: str, port: int, path: str, body: dict[str, Any]) -> Any:
    reader, writer = await asyncio.open_connection(host, port)
    payload = dumps(body).encode()
    writer.write(
        b"POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nx-api-key: x\r\n\r\n%s"
        % (path.encode(), host.encode(), len(payload), payload)
    )
    return reader, writer


async def _relay(
    ws: ServerConnection, up: tuple[str, int], session: str, model: str, prompt: str
) -> None:
    if model == ANTHROPIC_MODEL:
        path = "/v1/messages"
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": 4096,
            "stream": True,
            "messages": [{"role": "user", "content": prompt}],
        }
    else:
        path = f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    reader, writer = await _upstream(*up, path, body)
    index = 0
    send = ws.send
    try:
        async for data in sse_data(_body(reader)):
            event = loads(data)
            if model == ANTHROPIC_MODEL:
                if event.get("type") != "content_block_delta":
                    continue
                texts = [event["delta"]["text"]]
            else:
                texts = [
                    part["text"]
                    for candidate in event.get("candidates") or ()
                    for part in (candidate.get("content") or {}).get("parts") or ()
                    if part.get("text")
                ]
            for text in texts:
                await send(
                    dumps(
                        {
                            "event": "modelChunk",
                            "data": {
                                "sessionId": session,
                                "model": model,
                                "index": index,
                                "chunk": text,
                            },
                        }
                    )
                )
                index += 1
    finally:
        writer.close()
    await send(dumps({"event": "modelComplete", "data": {"model": model}}))


async def _socket(ws: ServerConnection, up: tuple[str, int]) -> None:
    await ws.send(dumps({"event": "authenticated", "data": {"userId": "floor"}}))
    async for raw in ws:
        frame = loads(raw)
        if frame.get("event") != "startComparison":
            continue
        data = frame["data"]
        session = f"floor-{next(_ids)}"
        await ws.send(dumps({"event": "sessionCreated", "data": {"sessionId": session}}))
        prompt = data["prompt"]
        outcome = await asyncio.gather(
            *(_relay(ws, up, session, m["model"], prompt) for m in data["models"]),
            return_exceptions=True,
        )
        failed = [repr(o) for o in outcome if isinstance(o, BaseException)]
        status = "error" if failed else "complete"
        await ws.send(
            dumps({"event": "comparisonComplete", "data": {"sessionId": session, "status": status}})
        )


async def _main(port: int, upstream: str) -> None:
    parts = urlsplit(upstream)
    up = (parts.hostname or "127.0.0.1", parts.port or 80)

    async def handler(ws: ServerConnection) -> None:
        await _socket(ws, up)

    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=2**20
    ):
        # Everything imported so far lives as long as the process: frozen, as the server does.
        gc.collect()
        gc.freeze()
        print(f"floor relay on ws://127.0.0.1:{port}/ws ({GOOGLE_MODEL}, {ANTHROPIC_MODEL})")
        await asyncio.Future()


def main() -> None:
    import uvloop

    uvloop.install()
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
