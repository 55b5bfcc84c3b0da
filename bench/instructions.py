"""Instructions per relayed chunk, counted by callgrind: ``python -m bench.instructions KIND``.

A load-immune CPU measure (CPU seconds swing with the machine's load, instruction counts do
not): the relay runs under ``valgrind --tool=callgrind`` with counting off (start-up and imports
run ~5x faster than counted), warms up, and ``callgrind_control -i on/off`` counts only the work:
comparisons of few and of many deltas per model; the difference of the two counts divided by the
difference in chunks is the marginal cost of one relayed chunk (the per-comparison start and save
cancel out). KIND:

- ``backend``: the project's provider backends alone (``providers["google"]`` and
  ``providers["anthropic"]``), in one process as ``bench.lean`` calls them, one process per count;
- ``server``: the whole server path (daphne, ``/ws``, the live core, the in-memory layer,
  PostgreSQL), driven by a plain ``websockets`` client outside valgrind (sockets opened and
  authenticated before counting);
- ``floor``: ``bench/floor.py``, the minimal relay, driven by the same client.

``server`` and ``floor`` count several windows in one process (``--repeat``), each dumped on its
own, and every window lasts as long (the few deltas are paced slower), so what the server does per
second (its 1 s flushes) cancels; the minimum per size is used. The fake upstream runs outside
valgrind and paces the deltas (``--rate``): slow enough that each delta is read on its own, as in
production. Needs ``valgrind`` and, for ``server``, ``DATABASE_URL`` (a migrated database).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    ANTHROPIC_MODEL,
    GOOGLE_MODEL,
    ISSUER,
    PY,
    ROOT,
    Keys,
    free_port,
    scripted,
)

#: Instrumentation starts off (imports and start-up run ~5x faster than counted) and is switched on
#: (``callgrind_control -i on``) only around the counted work.
VALGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--compress-strings=no"]


def _instrument(pid: int, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _total(out: Path) -> int:
    """The ``summary:``/``totals:`` instruction count of a callgrind output file."""
    totals = [
        int(line.split()[1])
        for line in out.read_text(errors="replace").splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    if not totals:
        raise RuntimeError(f"no totals in {out}")
    return max(totals)


def _wait_tcp(port: int, proc: subprocess.Popen[Any], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"port {port} not listening within {within:.0f} s")


def _scenario(upstream: str, deltas: int, rate: float) -> str:
    spec = {"id": f"n{deltas}r{rate:g}", "deltas": deltas, "delta_bytes": 16, "rate": rate}
    body = json.dumps(spec)
    req = urllib.request.Request(
        f"{upstream}/_bench/scenario", body.encode(), {"Content-Type": "application/json"}
    )
    return str(json.loads(urllib.request.urlopen(req).read())["marker"])


def _env(upstream: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="playground.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        CLERK_ISSUER=ISSUER,
        ANTHROPIC_API_KEY="x",
        ANTHROPIC_BASE_URL=upstream,
        ANTHROPIC_MODEL=ANTHROPIC_MODEL,
        GOOGLE_GEMINI_API_KEY="x",
        GOOGLE_GEMINI_BASE_URL=upstream,
        GOOGLE_GEMINI_MODEL=GOOGLE_MODEL,
        PLAYGROUND_MAX_RUNNING_PER_USER="100000",
        PLAYGROUND_MAX_STARTS_PER_MINUTE="100000",
        WS_MAX_UNAUTHENTICATED_PER_CLIENT="100000",
        WS_MAX_UNAUTHENTICATED="100000",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REDIS_URL", None)
    return env


# --- backend: runs inside valgrind -----------------------------------------------------------------


async def _backend(streams: int, marker: str, deltas: int) -> int:
    import gc

    import sniffio

    from providers.registry import providers
    from providers.types import StreamRequest, TextDelta

    sniffio.thread_local.name = "asyncio"
    for error in providers.preload():
        raise RuntimeError(error)
    gc.collect()
    gc.freeze()
    google, anthropic = providers["google"], providers["anthropic"]
    expected = scripted(deltas, 16)

    async def one(provider: Any, model: str, i: int) -> list[str]:
        request = StreamRequest(model=model, prompt=f"bench:ic-{i} {marker} Say something.")
        return [e.text async for e in provider.stream(request) if type(e) is TextDelta]

    async def pair(i: int) -> int:
        got = await asyncio.gather(one(google, GOOGLE_MODEL, i), one(anthropic, ANTHROPIC_MODEL, i))
        if any(texts != expected for texts in got):
            raise RuntimeError("a stream differs from the script")
        return 2 * deltas

    await pair(-1)  # warm: connection pools, first-call paths
    print("ready", flush=True)
    sys.stdin.readline()  # the driver switches counting on meanwhile
    counts = await asyncio.gather(*(pair(i) for i in range(streams)))
    return sum(counts)


def backend_child() -> None:
    import django
    import uvloop

    streams, marker, deltas = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    django.setup()
    uvloop.install()
    chunks = asyncio.run(_backend(streams, marker, deltas))
    print(f"done {chunks}", flush=True)
    sys.stdin.readline()  # counting is off again: exit


# --- server: the client, outside valgrind -----------------------------------------------------------


async def _client(
    url: str, token: str, streams: int, marker: str, deltas: int, counting: Any = None
) -> int:
    """Run ``streams`` comparisons on their own sockets, opened (and authenticated) before
    ``counting(True)``; ``counting(False)`` once every comparison is complete."""
    from websockets.asyncio.client import ClientConnection, connect

    expected = scripted(deltas, 16)

    async def opened() -> ClientConnection:
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_size=2**24,
            open_timeout=600,
            ping_interval=None,
        )
        hello = json.loads(await ws.recv())
        assert hello["event"] == "authenticated", hello
        return ws

    async def one(ws: ClientConnection, i: int) -> int:
        start = {
            "prompt": f"bench:ic-{i} {marker} Say something.",
            "models": [
                {"provider": "google", "model": GOOGLE_MODEL},
                {"provider": "anthropic", "model": ANTHROPIC_MODEL},
            ],
        }
        await ws.send(json.dumps({"event": "startComparison", "data": start}))
        texts: dict[str, list[str]] = {}
        async for raw in ws:
            frame = json.loads(raw)
            if frame["event"] == "modelChunk":
                data = frame["data"]
                chunks = texts.setdefault(data["model"], [])
                if data["index"] != len(chunks):
                    raise RuntimeError(f"chunk out of order: {data}")
                chunks.append(data["chunk"])
            elif frame["event"] in ("comparisonComplete", "error"):
                if frame["event"] == "error" or frame["data"]["status"] != "complete":
                    raise RuntimeError(f"comparison failed: {frame}")
                break
        if len(texts) != 2 or any(t != expected for t in texts.values()):
            raise RuntimeError("a stream differs from the script")
        return 2 * deltas

    sockets = [await opened() for _ in range(streams)]
    if counting is not None:
        await asyncio.to_thread(counting, True)
    total = sum(await asyncio.gather(*(one(ws, i) for i, ws in enumerate(sockets))))
    if counting is not None:
        await asyncio.to_thread(counting, False)
    for ws in sockets:
        await ws.close()
    return total


# --- driver -------------------------------------------------------------------------------------


def _count(kind: str, upstream: str, streams: int, deltas: int, rate: float, tmp: Path) -> int:
    """Instructions of the backends alone relaying ``streams`` comparisons of ``deltas`` deltas
    per model, warm (its own process, counted from start to end of the work)."""
    marker = _scenario(upstream, deltas, rate)
    out = tmp / f"{kind}-{deltas}.callgrind"
    env = _env(upstream)
    vg = [*VALGRIND, f"--callgrind-out-file={out}", PY]
    if kind == "backend":
        argv = [*vg, "-m", "bench.instructions", "_backend", str(streams), marker, str(deltas)]
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("backend child failed before its work")
            _instrument(proc.pid, True)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            done = proc.stdout.readline().split()
            _instrument(proc.pid, False)
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            proc.wait(600)
        finally:
            if proc.poll() is None:
                proc.kill()
        if not done or done[0] != "done" or int(done[1]) != 2 * streams * deltas:
            raise RuntimeError(f"backend child: {done}")
    return _total(out)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, within: float = 900) -> None:
    """Wait until ``pid`` is idle (under 5 % of a core over 5 s): the server preloads the provider
    SDKs in a thread after it starts serving, and that must not land in a counted window."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(5.0)
        if _cpu_seconds(pid) - before < 0.25:
            return
    raise RuntimeError(f"pid {pid} never went idle")


def _dump(pid: int, out: Path) -> int:
    """Dump the counts since the last dump (counting is off) and return their total."""
    before = set(out.parent.glob(out.name + ".*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = set(out.parent.glob(out.name + ".*")) - before
        if new:
            time.sleep(1.0)  # let callgrind finish writing it
            return _total(new.pop())
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def _windows(
    kind: str, upstream: str, streams: int, sizes: list[int], rate: float, tmp: Path
) -> dict[int, list[int]]:
    """One relay process (``server`` or ``floor``), warmed; then one counted window per entry of
    ``sizes`` (``streams`` comparisons of that many deltas), each dumped on its own: a one-off
    cost (a lazy import, a timer) inflates one window, not the minimum of several."""
    # Every window lasts as long (fewer deltas, paced slower): what the server does per second
    # (the 1 s flush of each running comparison, timers) is then the same in each and cancels.
    longest = max(sizes)
    markers = {n: _scenario(upstream, n, rate * n / longest) for n in set(sizes)}
    out = tmp / f"{kind}.callgrind"
    env = _env(upstream)
    keys = Keys()
    env["CLERK_JWT_KEY"] = keys.public_pem
    port = free_port()
    vg = [*VALGRIND, f"--callgrind-out-file={out}", PY]
    if kind == "floor":
        argv = [*vg, "-m", "bench.floor", str(port), upstream]
    else:
        argv = [*vg, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    totals: dict[int, list[int]] = {n: [] for n in sizes}
    with (tmp / f"{kind}.log").open("wb") as log:
        server = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_tcp(port, server, 900)
            url = f"ws://127.0.0.1:{port}/ws"
            token = keys.token("ic")
            asyncio.run(_client(url, token, streams, markers[longest], longest))  # not counted
            _wait_idle(server.pid)
            counting = functools.partial(_instrument, server.pid)
            for n in sizes:
                chunks = asyncio.run(_client(url, token, streams, markers[n], n, counting))
                if chunks != 2 * streams * n:
                    raise RuntimeError(f"{kind}: {chunks} chunks")
                totals[n].append(_dump(server.pid, out))
                print(f"  {kind} window {n} deltas: {totals[n][-1]:,} Ir", flush=True)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(600)
    return totals


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_backend":
        backend_child()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["backend", "server", "floor"])
    parser.add_argument("--upstream", required=True, help="a running tests.fake_upstream URL")
    parser.add_argument("--streams", type=int, default=2, help="comparisons at once (2 models)")
    parser.add_argument("--few", type=int, default=10, help="deltas per stream, small run")
    parser.add_argument("--many", type=int, default=40, help="deltas per stream, large run")
    # Slow enough that the relay, ~50x slower under callgrind, still reads each delta on its own.
    parser.add_argument("--rate", type=float, default=4.0, help="deltas per second per stream")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ic-"))
    print(f"callgrind outputs in {tmp}", flush=True)
    if args.kind != "backend":
        sizes = [args.few, args.many] * args.repeat
        totals = _windows(args.kind, args.upstream, args.streams, sizes, args.rate, tmp)
        few, many = min(totals[args.few]), min(totals[args.many])
        extra = 2 * args.streams * (args.many - args.few)
        print(
            f"{args.kind}: min {few:,} Ir ({args.few} deltas), min {many:,} Ir ({args.many}"
            f" deltas): {(many - few) / extra:,.0f} Ir per chunk",
            flush=True,
        )
    else:
        for _ in range(args.repeat):
            few = _count(args.kind, args.upstream, args.streams, args.few, args.rate, tmp)
            many = _count(args.kind, args.upstream, args.streams, args.many, args.rate, tmp)
            extra = 2 * args.streams * (args.many - args.few)
            print(
                f"{args.kind}: {few:,} Ir ({args.few} deltas), {many:,} Ir ({args.many} deltas):"
                f" {(many - few) / extra:,.0f} Ir per chunk",
                flush=True,
            )


if __name__ == "__main__":
    main()
