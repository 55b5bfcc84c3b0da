"""Real server processes for end-to-end tests: `manage.py serve` (daphne) on a free port.

Each test gets its own database (the ``database`` fixture): a copy of one migrated database, on the
PostgreSQL server the suite uses when DATABASE_URL points at PostgreSQL (CI), otherwise a SQLite
file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from tests import serverfork
from tests.backends.postgresql.base import drop_database_unwaited

ROOT = Path(__file__).resolve().parents[1]


#: The migrated template that ``make test``'s workers share: one ``migrate`` per run, not per
#: worker (``ProcessDatabases.start_shared_template``, in xdist's controller).
SHARED_TEMPLATE = "TEST_PROCESS_TEMPLATE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessDatabases:
    """Databases for server processes, each a copy of one database migrated once per session.

    ``migrate`` in a subprocess costs seconds; a PostgreSQL ``CREATE DATABASE ... TEMPLATE`` and
    its ``DROP`` write the whole database, mostly catalogs, to the WAL (docs/benchmarks.md). So a
    released PostgreSQL copy is emptied back to the template's state and pooled for the next
    ``copy()`` of this test process; SQLite copies are a file copy.
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
        self._conn: Any = None
        #: Released copies, each back in the template's state.
        self._pool: list[str] = []
        self._created: set[str] = set()
        #: The template's state (see ``_fingerprint``), taken from its first copy.
        self._fresh: dict[str, tuple[int, str]] | None = None
        self._sequences: list[tuple[str, int, bool]] = []

    def _url(self, name: str) -> str:
        if not self.postgres:
            return f"sqlite:///{self.workdir / name}"
        return f"postgres://{self._auth}@{self._admin['host']}:{self._admin['port']}/{name}"

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._admin)
        self._conn.execute(sql, params)

    def template(self) -> str:
        """The migrated original (created on first use)."""
        if self._template is None and self.shared_template():
            self._template = self._migrated_once(os.environ[SHARED_TEMPLATE])
        if self._template is None:
            name = f"playground_tmpl_{uuid.uuid4().hex[:12]}"
            if self.postgres:
                self._execute(f'CREATE DATABASE "{name}"')
            else:
                name += ".sqlite3"
            migrate(self._url(name), self.workdir)
            self._template = name
        return self._template

    def shared_template(self) -> bool:
        """Whether this process copies the run's one template (``make test``'s workers, on
        PostgreSQL) rather than a template of its own."""
        return self.postgres and bool(os.environ.get(SHARED_TEMPLATE))

    def _migrated_once(self, name: str) -> str:
        """Database ``name``, created and migrated by the first process of the run to ask for it
        (a file lock orders them; the comment marks a migrate that finished)."""
        import psycopg

        with open(Path(tempfile.gettempdir()) / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with psycopg.connect(**self._admin) as conn:
                row = conn.execute(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                    " WHERE datname = %s",
                    (name,),
                ).fetchone()
            if row is None or row[0] != "migrated":
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                self._execute(f'CREATE DATABASE "{name}"')
                migrate(self._url(name), self.workdir)
                self._execute(f"COMMENT ON DATABASE \"{name}\" IS 'migrated'")
        return name

    @staticmethod
    def start_shared_template() -> None:
        """In xdist's controller: name the template its workers share (made by the first)."""
        if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
            os.environ[SHARED_TEMPLATE] = f"playground_tmpl_{uuid.uuid4().hex[:12]}"

    def drop_shared_template(self) -> None:
        name = os.environ.pop(SHARED_TEMPLATE, None)
        if name:
            drop_database_unwaited(self._admin, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path(tempfile.gettempdir()) / f"{name}.lock")
            self.close()

    @contextlib.contextmanager
    def copy(self) -> Iterator[str]:
        """A DATABASE_URL of a migrated database in the template's state, for this block only."""
        template = self.template()
        if not self.postgres:
            name = f"playground_proc_{uuid.uuid4().hex[:12]}.sqlite3"
            shutil.copyfile(self.workdir / template, self.workdir / name)
            yield self._url(name)
            return
        if self._pool:
            name = self._pool.pop()
        else:
            name = f"playground_proc_{uuid.uuid4().hex[:12]}"
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            self._created.add(name)
            if self._fresh is None:
                self._remember_fresh(name)
        try:
            yield self._url(name)
        except BaseException:
            # The test failed: its database is not worth a reset that might hide why.
            self._drop(name)
            raise
        else:
            self._release(name)

    def _connect(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(**{**self._admin, "dbname": name, "autocommit": False})

    @staticmethod
    def _fingerprint(conn: Any) -> dict[str, tuple[int, str]]:
        """Every table's row count and a digest of its rows, and every sequence's position."""
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        parts = [
            f"SELECT '{t}', count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))"
            f' FROM "{t}" r'
            for t in tables
        ]
        state = {row[0]: (int(row[1]), row[2]) for row in conn.execute(" UNION ALL ".join(parts))}
        for name, value, called in conn.execute(
            "SELECT sequencename, coalesce(last_value, start_value), last_value IS NOT NULL"
            " FROM pg_sequences WHERE schemaname = 'public'"
        ):
            state[f"sequence {name}"] = (int(value), str(called))
        conn.rollback()
        return state

    def _remember_fresh(self, name: str) -> None:
        with self._connect(name) as conn:
            self._fresh = self._fingerprint(conn)
        self._sequences = [
            (key.removeprefix("sequence "), value, called == "True")
            for key, (value, called) in self._fresh.items()
            if key.startswith("sequence ")
        ]

    def _release(self, name: str) -> None:
        """Empty ``name`` back to the template's state and pool it, or drop it and raise."""
        assert self._fresh is not None
        # Whatever the test left connected (a server not stopped, a thread's connection) ends
        # here: its transaction rolls back, and nothing of it can write after the reset (the
        # timeout waits for the backend to exit).
        self._execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            with self._connect(name) as conn:
                # The tables migrate leaves empty are emptied; the ones it fills (migrations,
                # content types, permissions) no server changes, and the check below says so.
                # Foreign keys are DEFERRABLE INITIALLY DEFERRED: any order, checked at commit.
                for table, (rows, _) in self._fresh.items():
                    if rows == 0 and not table.startswith("sequence "):
                        conn.execute(f'DELETE FROM "{table}"')
                # A reused copy hands out the ids a fresh one would.
                for sequence, value, called in self._sequences:
                    conn.execute("SELECT setval(%s, %s, %s)", (f'"{sequence}"', value, called))
                conn.commit()
                state = self._fingerprint(conn)
        except BaseException:
            self._drop(name)
            raise
        if state != self._fresh:
            self._drop(name)
            differ = sorted(
                k for k in state.keys() | self._fresh.keys() if state.get(k) != self._fresh.get(k)
            )
            raise AssertionError(
                f"a server-process database differs from a fresh copy after its reset: {differ}"
            )
        self._pool.append(name)

    def _drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.discard(name)
        if name in self._pool:
            self._pool.remove(name)

    def close(self) -> None:
        if self.postgres:
            dropped = list(self._created)
            if self._template is not None and not self.shared_template():
                dropped.append(self._template)
            for name in dropped:
                drop_database_unwaited(self._admin, name)
            self._created.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._pool.clear()
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
            self.process = process = self.spawn(out, err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer in time")

    def spawn(
        self, out: IO[bytes] | None, err: IO[bytes] | None
    ) -> subprocess.Popen[bytes] | serverfork.ForkedProcess:
        """The started process (forked or fresh), its stdout and stderr to the files given (by
        default: discarded, and a pipe)."""
        if self.forked():
            return serverfork.ForkedProcess(
                self.args(), env=self.env, cwd=str(ROOT), stdout=out, stderr=err
            )
        return subprocess.Popen(
            [sys.executable, *self.args()],
            cwd=ROOT,
            env=self.env,
            stdout=out or subprocess.DEVNULL,
            stderr=err or subprocess.PIPE,
        )

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
