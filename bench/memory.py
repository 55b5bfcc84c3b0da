"""``python -m bench --memory [--out docs/benchmarks.md]``: what an idle authenticated socket
costs the server, as a slope.

For each server shape (daphne + in-memory layer, daphne + Redis layer, uvicorn + in-memory layer
with permessage-deflate negotiated as browsers ask), the server is warmed up (a few comparisons),
then one client process (``python -m bench.memory <config>``) opens authenticated ``/ws``
sockets in steps to 500, 1,000 and 2,000 and holds them. At 0 and after each step settles, the
server's USS (``memory_full_info().uss``: pages only the server maps, so shared libraries and
copy-on-write pages do not blur it) is read three times; the least-squares slope over the four
levels is the cost of one idle socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.resources import machine_load, median, process_memory, slope, write_section

LEVELS = (0, 500, 1000, 2000)
TARGET_KIB = 32


# --- client process -------------------------------------------------------------------------------


async def _client(cfg: dict[str, Any]) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    control = Path(cfg["control"])
    tokens: list[str] = cfg["tokens"]
    sockets: list[ClientConnection] = []
    failures: list[str] = []
    deflate = 0
    # Below the server's WS_MAX_UNAUTHENTICATED_PER_CLIENT (10): handshakes in flight count.
    sem = asyncio.Semaphore(8)

    async def one(token: str) -> ClientConnection:
        async with sem:
            ws = await connect(
                cfg["url"],
                additional_headers={"Authorization": f"Bearer {token}"},
                # "deflate" offers permessage-deflate with client_max_window_bits, as browsers do.
                compression=cfg["compression"],
                open_timeout=120,
                ping_interval=None,
                close_timeout=2,
            )
            hello = json.loads(await ws.recv())
            if hello.get("event") != "authenticated":
                raise RuntimeError(f"not authenticated: {hello}")
            return ws

    for step, target in enumerate(cfg["levels"]):
        go = control / f"step{step}"
        while not go.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        outcomes = await asyncio.gather(
            *(one(t) for t in tokens[len(sockets) + len(failures) : target]),
            return_exceptions=True,
        )
        for o in outcomes:
            if isinstance(o, BaseException):
                failures.append(repr(o)[:200])
            else:
                sockets.append(o)
                extensions = (
                    o.response.headers.get("Sec-WebSocket-Extensions", "") if o.response else ""
                )
                deflate += "permessage-deflate" in extensions
        (control / f"ready{step}").write_text(
            json.dumps(
                {
                    "open": len(sockets),
                    "failed": len(failures),
                    "deflate": deflate,
                    "failures": failures[:3],
                }
            )
        )
    while not (control / "release").exists():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


# --- orchestrator ---------------------------------------------------------------------------------


def _uss(pids: list[int]) -> float:
    readings = []
    for _ in range(3):
        readings.append(process_memory(pids)["uss"])
        time.sleep(0.5)
    return median(readings)


def measure(
    bench: Any, name: str, server: str, layer: str, compression: str | None
) -> dict[str, Any]:
    import subprocess

    from bench.__main__ import Case
    from bench.common import PY, ROOT, _raise_nofile

    child, url = bench.start_server(server, layer, name)
    out: dict[str, Any] = {"name": name, "levels": [], "uss": [], "note": ""}
    try:
        pids = bench.server_pids(child)
        warm = Case("warm", "relay", 10, layer=layer, scenario="warm", deltas=4, rate=1000.0)
        bench.run_case(warm, (url, None), [])
        time.sleep(1.0)
        control = bench.logs / f"{name}.control"
        control.mkdir()
        tag = f"{bench.prefix}{name}"
        cfg = {
            "url": url,
            "compression": compression,
            "control": str(control),
            "levels": list(LEVELS[1:]),
            "tokens": [bench.keys.token(f"user_{tag}_{i}") for i in range(LEVELS[-1])],
        }
        config = bench.logs / f"{name}.config.json"
        config.write_text(json.dumps(cfg))
        with (bench.logs / f"{name}.client.log").open("wb") as log:
            proc = subprocess.Popen(
                [PY, "-m", "bench.memory", str(config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_nofile,
            )
        try:
            out["levels"].append(0)
            out["uss"].append(_uss(pids))
            out["load"] = [machine_load()]
            for step, target in enumerate(LEVELS[1:]):
                (control / f"step{step}").write_text("")
                ready = control / f"ready{step}"
                deadline = time.monotonic() + 300
                while not ready.exists() and time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise RuntimeError(f"client exited: {proc.returncode}")
                    time.sleep(0.2)
                state = json.loads(ready.read_text())
                time.sleep(2.0)  # let the server settle (handshake buffers freed)
                out["levels"].append(state["open"])
                out["uss"].append(_uss(pids))
                out["deflate"] = state["deflate"]
                if state["failed"]:
                    out["note"] = f"{state['failed']} failed of {target}: {state['failures'][:1]}"
                out["load"].append(machine_load())
            out["rss"] = process_memory(pids)["rss"]
        finally:
            (control / "release").write_text("")
            with contextlib.suppress(Exception):
                proc.wait(60)
    finally:
        bench.stop(child)
    b, _ = slope([float(x) for x in out["levels"]], out["uss"])
    out["slope_kib"] = b / 1024
    return out


SHAPES = {
    "idle-daphne-memory": ("daphne", "memory", None),
    "idle-daphne-redis": ("daphne", "redis", None),
    "idle-uvicorn-deflate": ("uvicorn", "memory", "deflate"),
    "idle-uvicorn-plain": ("uvicorn", "memory", None),
}


def run(args: argparse.Namespace) -> str:
    from bench.__main__ import Bench, Database
    from bench.common import machine

    bench = Bench(args)
    print(f"[memory] logs in {bench.logs}", flush=True)
    rows = []
    try:
        bench.start_upstream()
        bench.db = Database()
        bench.migrate()
        for name, (server, layer, compression) in SHAPES.items():
            if args.cases and name not in args.cases:
                continue
            print(f"[memory] {name} ...", flush=True)
            rows.append(measure(bench, name, server, layer, compression))
            print(f"[memory]   {rows[-1]}", flush=True)
    finally:
        bench.close()
    return report(rows, machine())


def report(rows: list[dict[str, Any]], info: dict[str, str]) -> str:
    lines = [
        f"Machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}. Code: commit "
        f"{info['commit']}. Command: `python -m bench --memory`.",
        "",
        "| server shape | sockets held | server USS (MiB) | slope (KiB per idle socket) "
        "| permessage-deflate negotiated | machine load during the steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(  # one row per shape
            f"| {r['name']} | {' / '.join(str(n) for n in r['levels'])} "
            f"| {' / '.join(f'{u / 2**20:.1f}' for u in r['uss'])} | **{r['slope_kib']:.1f}** "
            f"| {r.get('deflate', 0)} of {r['levels'][-1]} | {r['load'][0]} → {r['load'][-1]}"
            f"{'; ' + r['note'] if r['note'] else ''} |"
        )
    lines.append("")
    for r in rows:
        if r["name"].startswith("idle-daphne"):
            lines.append(
                f"- Target: idle socket ≤ {TARGET_KIB} KiB USS slope on daphne ({r['name']}) — "
                f"{'**met**' if r['slope_kib'] <= TARGET_KIB else '**missed**'} "
                f"({r['slope_kib']:.1f} KiB)."
            )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    text = run(args)
    print(text)
    if args.out:
        write_section(Path(args.out), "memory", text)


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_client(json.loads(Path(sys.argv[1]).read_text())))
