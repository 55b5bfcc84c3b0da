"""Real server processes for end-to-end tests: `manage.py serve` (daphne) on a free port.

Each test gets its own database (the ``database`` fixture): a copy of one migrated database, on the
PostgreSQL server the suite uses when DATABASE_URL points at PostgreSQL (CI), otherwise a SQLite
file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from tests import serverfork

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessDatabases:
    """Databases for server processes, each a copy of one database migrated once per session.

    ``migrate`` in a subprocess costs seconds; a copy costs milliseconds (PostgreSQL
    ``CREATE DATABASE ... TEMPLATE``, or a copy of the SQLite file).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        db = settings.DATABASES["default"]
        self.postgres = "postgresql" in db["ENGINE"]
        self._admin = {
            "host": db["HOST"] or "127.0.0.1",
            "port": db["PORT"] or 5432,
            "user": db["USER"],
            "password": db["PASSWORD"] or None,
            "dbname": "postgres",
            "autocommit": True,
        }
        self._auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        self._template: str | None = None

    def _url(self, name: str) -> str:
        if not self.postgres:
            return f"sqlite:///{self.workdir / name}"
        return f"postgres://{self._auth}@{self._admin['host']}:{self._admin['port']}/{name}"

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(**self._admin) as conn:
            conn.execute(sql)

    def template(self) -> str:
        """The migrated original (created on first use)."""
        if self._template is None:
            name = f"playground_tmpl_{uuid.uuid4().hex[:12]}"
            if self.postgres:
                self._execute(f'CREATE DATABASE "{name}"')
            else:
                name += ".sqlite3"
            migrate(self._url(name), self.workdir)
            self._template = name
        return self._template

    @contextlib.contextmanager
    def copy(self) -> Iterator[str]:
        """A DATABASE_URL of a fresh migrated database, dropped afterwards."""
        template = self.template()
        name = f"playground_proc_{uuid.uuid4().hex[:12]}"
        if self.postgres:
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            try:
                yield self._url(name)
            finally:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            name += ".sqlite3"
            shutil.copyfile(self.workdir / template, self.workdir / name)
            yield self._url(name)

    def close(self) -> None:
        if self._template is not None and self.postgres:
            self._execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
        self._template = None


#: A server with any of these set can stream from a vendor SDK (the fake upstream, in tests).
VENDOR_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_GEMINI_API_KEY")


def server_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "DATABASE_URL": database_url,
            "DATA_DIR": str(tmp_path / "data"),
            "DJANGO_DEBUG": "1",
            "LOG_LEVEL": "WARNING",
            # As in-process (tests/conftest.py): a busy machine's lag must not refuse starts.
            "PLAYGROUND_MAX_LOOP_LAG_SECONDS": "0",
        }
    )
    env.pop("REDIS_URL", None)
    env.update(extra)
    if not any(env.get(name) for name in VENDOR_KEYS):
        # No vendor can stream here: the SDK preload (~2 s of CPU per process, most of a start)
        # would only load SDKs no test uses. Servers with a vendor key keep it, and
        # test_launchers.py checks the preload itself.
        env.setdefault("PROVIDER_PRELOAD", "0")
    return env


def migrate(database_url: str, tmp_path: Path) -> None:
    serverfork.run(
        ["manage.py", "migrate", "--noinput", "-v0"],
        cwd=str(ROOT),
        env=server_env(database_url, tmp_path),
        # The template's migrate (once per test process) was part of a 161 s fixture setup at a
        # load of 15 on this machine's two cores: a bound for a hang only.
        timeout=300,
    ).check_returncode()


class Server:
    """A `manage.py serve` process (a subclass may run another command line).

    Forked from the suite's fork server (tests/serverfork.py: the libraries already imported)
    when ``fork``; otherwise, and under ``TEST_SERVER_FORK=0``, a fresh interpreter. A test of the
    interpreter's own start-up or exit passes ``fork=False`` (a forked process never finalizes
    its interpreter: what only happens then, such as a leaked session's warning, cannot happen).
    """

    #: Whether this server may be forked (subclasses with their own launch set it False).
    fork = True

    def __init__(
        self, env: dict[str, str], port: int | None = None, *, fork: bool | None = None
    ) -> None:
        self.port = port or free_port()
        self.env = dict(env, PORT=str(self.port), HOST="127.0.0.1")
        if fork is not None:
            self.fork = fork
        self.process: subprocess.Popen[bytes] | serverfork.ForkedProcess | None = None
        self.stdout: Path | None = None
        self.stderr: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def args(self) -> list[str]:
        """The command line after the Python interpreter."""
        return ["manage.py", "serve"]

    def forked(self) -> bool:
        """Whether start() forks."""
        return self.fork and serverfork.enabled()

    def start(
        self, timeout: float = 120.0, stdout: Path | None = None, stderr: Path | None = None
    ) -> Server:
        """Start and wait until ``/`` answers; the process's stdout and stderr (its log) go to
        the files given.

        ``timeout`` only bounds a start that hangs (one that exits fails at once): a fresh
        interpreter's ``manage.py serve`` took 10-13 s to answer on the slow CI machine, 13-24 s
        with one core busy, and ``django.setup()`` alone 21 s at a load of 10."""
        self.stdout = stdout
        self.stderr = stderr
        with (
            open(stdout, "wb") if stdout else contextlib.nullcontext() as out,
            open(stderr, "wb") if stderr else contextlib.nullcontext() as err,
        ):
            if self.forked():
                self.process = serverfork.ForkedProcess(
                    self.args(), env=self.env, cwd=str(ROOT), stdout=out, stderr=err
                )
            else:
                self.process = subprocess.Popen(
                    [sys.executable, *self.args()],
                    cwd=ROOT,
                    env=self.env,
                    stdout=out or subprocess.DEVNULL,
                    stderr=err or subprocess.PIPE,
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer in time")

    def log(self) -> str:
        """What the process has written to stderr: its file's content, or (once it has exited)
        the pipe's."""
        if self.stderr is not None:
            return self.stderr.read_text(errors="replace")
        assert self.process is not None and self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process dies without any chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class ProcessAuth:
    """An RSA key for server processes (CLERK_JWT_KEY) and real RS256 tokens signed by it."""

    issuer = "https://clerk.process-tests.invalid"

    def __init__(self, key_name: str = "process-tests") -> None:
        from cryptography.hazmat.primitives import serialization

        from tests.tokens import shared_private_key

        # One RSA key per test process and name (generating one costs ~0.1-0.3 s of CPU): the
        # server processes of a test trust it; no test relies on two instances differing.
        self._key = shared_private_key(key_name)
        self.public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def env(self) -> dict[str, str]:
        return {"CLERK_JWT_KEY": self.public_pem, "CLERK_ISSUER": self.issuer}

    def token(self, user_id: str, ttl: int = 600) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "sub": user_id,
            "sid": f"sess_{user_id}",
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "iss": self.issuer,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"typ": "JWT"})
