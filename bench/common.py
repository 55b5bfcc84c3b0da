"""Shared helpers: statistics, scripted deltas, auth keys and tokens, child processes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ISSUER = "https://bench.clerk.invalid"
GOOGLE_MODEL = "gemini-2.5-flash"
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
VENDOR_OF_MODEL = {GOOGLE_MODEL: "google", ANTHROPIC_MODEL: "anthropic"}


def scripted(count: int, size: int) -> list[str]:
    """The texts the fake upstream streams (same function it uses)."""
    from tests.fake_upstream.server import bench_deltas

    return list(bench_deltas(count, size))


# --- statistics ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# --- auth -----------------------------------------------------------------------------------------


class Keys:
    """An RSA key pair: the server verifies with the public PEM, the harness mints tokens."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self._private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def token(self, user_id: str, lifetime: int = 3600) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "sub": user_id,
            "sid": f"sess_{user_id}",
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + lifetime,
            "iss": ISSUER,
        }
        return jwt.encode(claims, self._private, algorithm="RS256", headers={"typ": "JWT"})


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Child:
    """A child process with its output in a log file; stopped with SIGINT then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 8.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def wait_http(url: str, child: Child, within: float = 60.0) -> None:
    """Wait until ``url`` answers (any HTTP status) or the child dies."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {within:.0f}s:\n{child.tail()}")


def http_json(url: str, data: Any = None, timeout: float = 30.0) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def run_worker(module: str, config: dict[str, Any], log_dir: Path, timeout: float) -> Any:
    """Run ``python -m <module> <config.json>`` and return the JSON it writes to ``out``."""
    name = config["name"]
    config_path = log_dir / f"{name}.config.json"
    out_path = log_dir / f"{name}.result.json"
    config = {**config, "out": str(out_path)}
    config_path.write_text(json.dumps(config))
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [PY, "-m", module, str(config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile,
            env=os.environ.copy(),
        )
    return proc, out_path, log_path


async def rendezvous(cfg: dict[str, Any]) -> None:
    """Tell the orchestrator this worker is prepared (imports, warm-up, sockets open), then wait
    for its go file and take the common start time from it (``cfg["start_at"]``)."""
    import asyncio

    Path(cfg["out"] + ".ready").write_text("1")  # noqa: ASYNC240
    go = Path(cfg["go"])
    while not go.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.005)
    cfg["start_at"] = float(go.read_text())  # noqa: ASYNC240
    # The worker's own CPU from here to ``cpu1`` (set when its streams are done) is reported as
    # ``cpu_s``: the timed part only, without imports, warm-up and the checks after.
    cfg["cpu0"] = time.process_time()


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    changed = [line[3:] for line in status if not line[3:].startswith(("bench/", "docs/"))]
    if changed:
        commit += " + uncommitted changes to " + ", ".join(changed)
    return {
        "commit": commit or "unknown",
        "nproc": str(os.cpu_count()),
        "cpu": model or platform.processor(),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def probe_env(out: Path) -> dict[str, str]:
    """Environment that loads the first-token probe (``bench/probe``) into a process, which
    writes its events to ``out`` when it exits."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": str(ROOT / "bench" / "probe") + (os.pathsep + path if path else ""),
        "BENCH_PROBE_OUT": str(out),
    }
