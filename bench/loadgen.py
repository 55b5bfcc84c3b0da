"""Load generator (its own process): ``python -m bench.loadgen <config.json>``.

``stream`` mode: one authenticated socket per comparison (``transport``: ``ws`` for ``/ws``,
``sio`` for Socket.IO over its WebSocket transport at ``/socket.io/``) (plus one watcher socket per comparison
when ``watch_url`` is set, on that server); each starts a comparison of two models at its slot of
the ramp, records ``time.monotonic()`` for every frame and, after the run, checks that every
chunk arrived exactly once, in order, with the scripted text. ``idle`` mode: open N authenticated
sockets and hold them until the release file appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import ANTHROPIC_MODEL, GOOGLE_MODEL, rendezvous, scripted

monotonic = time.monotonic


class Wire:
    """The ``/ws`` dialect: ``{"event", "data"}`` text frames."""

    chunk = '{"event":"modelChunk"'

    def encode(self, event: str, data: Any) -> str:
        return json.dumps({"event": event, "data": data})

    def decode(self, raw: str) -> tuple[str, Any] | None:
        frame = json.loads(raw)
        return frame["event"], frame["data"]

    def is_end(self, raw: str) -> bool:
        return '"event":"comparisonComplete"' in raw[:40] or raw.startswith('{"event":"error"')

    async def open(self, url: str, token: str) -> ClientConnection:
        return await _open(url, token)


class SocketIOWire(Wire):
    """Socket.IO 5 over Engine.IO 4's WebSocket transport, as socket.io-client with
    ``transports: ["websocket"]`` speaks it (default namespace; ``42[event, data]``). A minimal
    client: the load generator must stay far lighter than the server it measures."""

    chunk = '42["modelChunk"'

    def encode(self, event: str, data: Any) -> str:
        return "42" + json.dumps([event, data])

    def decode(self, raw: str) -> tuple[str, Any] | None:
        if not raw.startswith("42"):
            return None
        event, data = json.loads(raw[2:])
        return event, data

    def is_end(self, raw: str) -> bool:
        return raw.startswith(('42["comparisonComplete"', '42["error"'))

    async def open(self, url: str, token: str) -> ClientConnection:
        ws = await connect(
            url,
            compression=None,
            max_size=2**24,
            max_queue=None,
            open_timeout=120,
            ping_interval=None,
            close_timeout=2,
        )
        opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0"), opened
        await ws.send("40" + json.dumps({"token": token}))
        connected = await ws.recv()
        if not isinstance(connected, str) or not connected.startswith("40"):
            raise RuntimeError(f"not connected: {connected!r}")
        hello = await ws.recv()
        if not isinstance(hello, str) or not hello.startswith('42["authenticated"'):
            raise RuntimeError(f"not authenticated: {hello!r}")
        return ws


WIRES = {"ws": Wire(), "sio": SocketIOWire()}
wire: Wire = WIRES["ws"]


async def _open(url: str, token: str) -> ClientConnection:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        max_size=2**24,
        max_queue=None,
        open_timeout=120,
        ping_interval=None,
        close_timeout=2,
    )
    hello = json.loads(await ws.recv())
    if hello.get("event") != "authenticated":
        raise RuntimeError(f"not authenticated: {hello}")
    return ws


async def _read_until_complete(
    ws: ClientConnection, log: list[tuple[float, str]], on_created: Any = None
) -> None:
    chunk = wire.chunk
    async for raw in ws:
        now = monotonic()
        assert isinstance(raw, str)
        if raw == "2":  # Engine.IO ping (Socket.IO only)
            await ws.send("3")
            continue
        log.append((now, raw))
        if on_created is not None and raw.startswith(chunk):
            # The watcher asks once the run is visibly streaming (see _comparison).
            decoded = wire.decode(raw)
            assert decoded is not None
            on_created(decoded[1]["sessionId"])
            on_created = None
        elif wire.is_end(raw):
            return


Frame = tuple[float, str, dict[str, Any]]


def _check_stream(
    frames: list[Frame], expected: list[str], start_index: dict[str, int]
) -> dict[str, Any]:
    """Per model: receive times by index and the integrity counters."""
    models: dict[str, Any] = {}
    for name in (GOOGLE_MODEL, ANTHROPIC_MODEL):
        models[name] = {"times": {}, "dup": 0, "order": 0, "text": 0, "complete": False}
    last: dict[str, int] = {k: start_index.get(k, 0) - 1 for k in models}
    for t, event, data in frames:
        if event == "modelChunk":
            key: str = data["model"]
            info = models[key]
            index: int = data["index"]
            if str(index) in info["times"]:
                info["dup"] += 1
                continue
            if index != last[key] + 1:
                info["order"] += 1
            last[key] = index
            if index >= len(expected) or data["chunk"] != expected[index]:
                info["text"] += 1
            info["times"][str(index)] = t
        elif event == "modelComplete":
            models[data["model"]]["complete"] = True
    for name, info in models.items():
        first = start_index.get(name, 0)
        info["lost"] = sum(1 for i in range(first, len(expected)) if str(i) not in info["times"])
    return models


def _parse(log: list[tuple[float, str]]) -> list[Frame]:
    out: list[Frame] = []
    for t, raw in log:
        decoded = wire.decode(raw)
        if decoded is not None:
            out.append((t, decoded[0], decoded[1]))
    return out


async def _connect(cfg: dict[str, Any], token: str) -> tuple[ClientConnection, Any]:
    ws = await wire.open(cfg["url"], token)
    watcher = await wire.open(cfg["watch_url"], token) if cfg.get("watch_url") else None
    return ws, watcher


async def _comparison(
    cfg: dict[str, Any],
    i: int,
    sockets: tuple[ClientConnection, ClientConnection | None],
    expected: list[str],
) -> Any:
    result: dict[str, Any] = {"i": i}
    tag = f"{cfg['tag_prefix']}-{i}"
    ws, watcher = sockets
    marker = f" scenario:{cfg['scenario']}" if cfg.get("scenario") else ""
    frame = wire.encode(
        "startComparison",
        {
            "prompt": f"bench:{tag}{marker} Say something.",
            "models": [
                {"provider": "google", "model": GOOGLE_MODEL},
                {"provider": "anthropic", "model": ANTHROPIC_MODEL},
            ],
            "requestId": tag,
        },
    )
    session: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    delay = cfg["start_at"] + cfg["ramp"] * cfg["slot"].get(str(i), 0.0) - monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    log: list[tuple[float, str]] = []
    watch_log: list[tuple[float, str]] = []

    # The watcher sends ``watchSession`` when the first chunk reached the starting socket, not at
    # ``sessionCreated``: the server sends ``sessionCreated`` before the run has joined its
    # channel-layer group, so an immediate ``watch.request`` can be lost (see docs/benchmarks.md).
    async def watch() -> None:
        assert watcher is not None
        sid = await session
        result["watch_sent"] = monotonic()
        await watcher.send(wire.encode("watchSession", {"sessionId": sid}))
        await _read_until_complete(watcher, watch_log)

    watch_task = asyncio.create_task(watch()) if watcher is not None else None
    result["sent"] = monotonic()
    await ws.send(frame)

    def created(sid: str) -> None:
        if not session.done():
            session.set_result(sid)

    stuck: list[str] = []
    # Stop waiting a little before the worker's deadline, keeping what arrived (counted as lost).
    limit = max(1.0, cfg["deadline"] - 5 - monotonic())
    try:
        async with asyncio.timeout(limit):
            # Only a watched run decodes a frame while timing (its first chunk, once).
            await _read_until_complete(ws, log, created if watcher is not None else None)
    except TimeoutError:
        stuck.append("starting socket: no comparisonComplete")
    except ConnectionClosed as exc:  # kept: its chunks so far are checked, the rest are lost
        stuck.append(f"starting socket closed by the server ({exc.rcvd.code if exc.rcvd else '-'})")
    if watch_task is not None and not session.done():
        watch_task.cancel()  # refused (or cut) before its first chunk: nothing to watch
        watch_task = None
    if watch_task is not None:
        try:
            async with asyncio.timeout(max(1.0, cfg["deadline"] - 4 - monotonic())):
                await watch_task
        except TimeoutError:
            state = "never sent" if "watch_sent" not in result else "sent"
            got = len(watch_log)
            first = ""
            if watch_log and "watch_sent" in result:
                after = (watch_log[0][0] - result["watch_sent"]) * 1000
                first = f", first {watch_log[0][1][:28]} after {after:.0f} ms"
            stuck.append(
                f"watcher (watchSession {state}, {got} frames{first}): no comparisonComplete"
            )
    result["end"] = monotonic()
    # Parsed and checked after every stream of the run is done (``_finish``): no JSON is parsed
    # while other streams are still being timed.
    result["_log"], result["_watch_log"] = log, watch_log if watcher is not None else None
    result["_stuck"] = stuck
    return result


def _finish(result: dict[str, Any], expected: list[str]) -> dict[str, Any]:
    frames = _parse(result.pop("_log"))
    watch_log = result.pop("_watch_log")
    result["errors"] = [*result.pop("_stuck"), *(d for _, e, d in frames if e == "error")]
    result["created"] = next((t for t, e, _ in frames if e == "sessionCreated"), None)
    result["session"] = next((d["sessionId"] for _, e, d in frames if e == "sessionCreated"), None)
    result["done"] = next((d["status"] for _, e, d in frames if e == "comparisonComplete"), None)
    result["models"] = _check_stream(frames, expected, {})
    if watch_log is not None:
        wframes = _parse(watch_log)
        snap = next((d for _, e, d in wframes if e == "sessionSnapshot"), None)
        starts: dict[str, int] = {}
        bad_snapshot = 0
        if snap is None:
            bad_snapshot = 1
        else:
            for model in snap["models"]:
                n = model["nextIndex"]
                starts[model["key"]] = n
                if model["content"] != "".join(expected[:n]):
                    bad_snapshot += 1
        result["watch"] = {
            "snapshot": snap is not None,
            "bad_snapshot": bad_snapshot,
            "done": next((d["status"] for _, e, d in wframes if e == "comparisonComplete"), None),
            "errors": [d for _, e, d in wframes if e == "error"],
            "models": _check_stream(wframes, expected, starts),
        }
    return result


async def _stream(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["deadline"] = monotonic() + cfg["timeout"]
    expected = scripted(cfg["deltas"], cfg["delta_bytes"])
    tokens: dict[str, str] = cfg["tokens"]
    # Open and authenticate every socket first, then wait for the common start: the ramp is then
    # not disturbed by connection set-up (or by this process's start-up).
    keys = list(tokens)
    opened = await asyncio.gather(*(_connect(cfg, tokens[k]) for k in keys), return_exceptions=True)
    failures = [f"connect: {o!r}" for o in opened if isinstance(o, BaseException)]
    await rendezvous(cfg)
    # The comparisons' time counts from the common start, not from a slow connection storm.
    cfg["deadline"] = max(cfg["deadline"], cfg["start_at"] + cfg["timeout"])
    repeat = int(cfg.get("repeat", 1))

    async def in_a_row(k: str, sockets: Any) -> list[Any]:
        # ``repeat`` comparisons one after another on the same socket (i = k * repeat + r).
        try:
            return [
                await _comparison(cfg, int(k) * repeat + r, sockets, expected)
                for r in range(repeat)
            ]
        finally:
            for sock in sockets:
                if sock is not None:
                    with contextlib.suppress(Exception):
                        await sock.close()

    tasks = [
        asyncio.create_task(in_a_row(k, o))
        for k, o in zip(keys, opened, strict=True)
        if not isinstance(o, BaseException)
    ]
    results: list[dict[str, Any]] = []
    # On timeout keep what finished: the unfinished comparisons are reported, not the whole run lost.
    done, pending = await asyncio.wait(tasks, timeout=cfg["timeout"])
    cfg["cpu1"] = time.process_time()
    for task in pending:
        task.cancel()
    if pending:
        failures.append(f"{len(pending)} sockets unfinished after {cfg['timeout']:.0f}s")
    for task in done:
        try:
            results.extend(_finish(r, expected) for r in task.result())
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    return {"comparisons": results, "failures": failures}


async def _idle(cfg: dict[str, Any]) -> dict[str, Any]:
    release = Path(cfg["release"])
    sem = asyncio.Semaphore(50)

    async def one(token: str) -> ClientConnection:
        async with sem:
            return await _open(cfg["url"], token)

    outcomes = await asyncio.gather(
        *(one(t) for t in cfg["tokens"].values()), return_exceptions=True
    )
    sockets = [s for s in outcomes if isinstance(s, ClientConnection)]
    failures = [repr(s) for s in outcomes if not isinstance(s, ClientConnection)]
    Path(cfg["out"] + ".ready").write_text(json.dumps({"open": len(sockets)}))  # noqa: ASYNC240
    while not release.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.1)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return {"open": len(sockets), "failures": failures[:5], "failed": len(failures)}


def job(cfg: dict[str, Any]) -> dict[str, Any]:
    global wire
    wire = WIRES[cfg.get("transport", "ws")]
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    runner = _idle if cfg.get("mode") == "idle" else _stream
    result = asyncio.run(runner(cfg))
    result["cpu_s"] = cfg.get("cpu1", 0.0) - cfg.get("cpu0", 0.0)
    return result


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).write_text(json.dumps(job(cfg)))


if __name__ == "__main__":
    main()
