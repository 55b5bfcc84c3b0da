"""Server processes forked from a pre-imported fork server instead of started as fresh interpreters.

A ``python manage.py serve`` spends ~0.4-0.6 s of CPU importing Django, Channels, Twisted, aiohttp,
psycopg, ... before it runs anything of the project, and the suite starts ~50 of them. A
``multiprocessing`` fork server imports those libraries once; each server is then a fork of it that sets its environment, working directory and standard streams and runs
``manage.py`` as the interpreter would. ``TEST_SERVER_FORK=0`` turns it off (plain subprocesses), to
tell a fork problem from a server one.

This module is what every forked child imports (``tests`` is an empty package): standard library
only.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import runpy
import subprocess
import sys
import tempfile
from multiprocessing import forkserver, popen_forkserver, reduction, resource_tracker, spawn, util
from typing import IO, Any

#: Imported once by the fork server. Libraries only: nothing here reads Django's settings or the
#: environment that differs per server, starts a thread, creates an event loop or connects. Not
#: ``daphne.server`` (nor ``daphne.cli``, which imports it): it creates its event loop and
#: installs Twisted's reactor at import, which must happen in each server, after the event loop
#: policy (uvloop or asyncio) is chosen. Not ``ninja``: it reads Django's settings at import.
PRELOAD = (
    "django",
    "django.db",
    "django.core.handlers.asgi",
    "django.core.management",
    "django.db.backends.postgresql.base",
    "django.template",
    "django.forms",
    "django.contrib.admin",
    "django.test",
    "channels",
    "channels.routing",
    "channels.generic.websocket",
    "autobahn",
    "autobahn.twisted.websocket",
    "twisted.internet.asyncioreactor",
    "twisted.internet.endpoints",
    "twisted.logger",
    "twisted.web.http",
    "daphne.http_protocol",
    "daphne.ws_protocol",
    "daphne.access",
    "daphne.endpoints",
    "psycopg",
    "redis.asyncio",
    "aiohttp",
    "httpx",
    "msgpack",
    "jwt",
    "cryptography",
    "pydantic",
    "pydantic.types",
    "pydantic.json_schema",
    "uvloop",
    "socketio",
    "engineio",
    # The vendor SDKs: a server with a vendor key imports them at start (the preload), ~2 s of
    # CPU each time on a normal machine and over 10 s on a slow one; imported here once per
    # pytest process instead.
    "httpx2",
    "anthropic",
    "openai",
    "google.genai",
    "httpx_aiohttp",
    # The providers' TLS contexts, built at its import (the CA bundle: ~50 ms of CPU each), then
    # shared by every server forked from here, with the environment of this pytest process.
    "providers.tls",
    # What each server's start-up imported of Django's and the middleware libraries besides
    # (none reads settings at import): the system checks' migration autodetector, static files,
    # the middleware, django-environ.
    "django.core.management.commands.migrate",
    "django.core.management.commands.makemigrations",
    "django.contrib.staticfiles.finders",
    "django.contrib.staticfiles.storage",
    "django.contrib.staticfiles.checks",
    "django.contrib.messages.storage.fallback",
    "django.contrib.sessions.backends.base",
    "django.contrib.sessions.serializers",
    "django.contrib.auth.hashers",
    "django.contrib.auth.password_validation",
    "django.middleware.security",
    "django.middleware.common",
    "django.middleware.clickjacking",
    "django.views.csrf",
    "django.views.defaults",
    "django.templatetags.cache",
    "django.templatetags.l10n",
    "django.templatetags.tz",
    "django.core.cache.backends.locmem",
    "whitenoise.middleware",
    "whitenoise.runserver_nostatic",
    "corsheaders.middleware",
    "corsheaders.checks",
    "channels.security.websocket",
    "environ",
    # Last: freezes all of the above (tests/serverfork_freeze.py).
    "tests.serverfork_freeze",
)

#: Must still be absent from every forked child (checked in each: a preloaded library that pulled
#: them in would run every server on the fork server's reactor and loop).
NOT_PRELOADED = ("daphne.server", "twisted.internet.reactor")


def enabled() -> bool:
    return os.environ.get("TEST_SERVER_FORK", "1") != "0"


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, multiprocessing.context.ForkServerContext)
    preload = list(PRELOAD)
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None and getattr(main, "__file__", None):
        # Run as a script (``.venv/bin/pytest``): each child re-runs the parent's script as
        # ``__mp_main__`` (multiprocessing's spawn.prepare), which imports pytest; imported here
        # once instead. ``python -m pytest`` and xdist's workers (``-c``) re-run nothing.
        preload.append("pytest")
    context.set_forkserver_preload(preload)
    return context


#: The address of the fork server that ``make test``'s xdist workers share, which the controller
#: started before them (``start_shared``): one preload per run (~3.4 s of CPU), not per worker.
SHARED_ADDRESS = "TEST_SERVER_FORKSERVER"


def start_shared() -> None:
    """Start the fork server now, in this process (xdist's controller), for the processes it
    starts next (its workers) to fork their servers from."""
    if not enabled():
        return
    _context()
    forkserver.ensure_running()
    os.environ[SHARED_ADDRESS] = forkserver._forkserver._forkserver_address  # type: ignore[attr-defined]


class _SharedForkServer(forkserver.ForkServer):
    """A client of the fork server another process started and keeps running."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self._forkserver_address = address
        # The fork server hands each child an "alive" descriptor to hold; it watches the
        # controller's own.
        self._alive_r, self._forkserver_alive_fd = os.pipe()

    def ensure_running(self) -> None:
        resource_tracker.ensure_running()


_shared: list[_SharedForkServer] = []  # the one client of this process, made on first use


class _SharedPopen(popen_forkserver.Popen):
    """multiprocessing's fork-server ``Popen``, asking the shared fork server instead of its own."""

    def _launch(self, process_obj: Any) -> None:
        if not _shared:
            _shared.append(_SharedForkServer(os.environ[SHARED_ADDRESS]))
        data = io.BytesIO()
        multiprocessing.context.set_spawning_popen(self)
        try:  # what the child unpickles: how to prepare, then the process (and its fds)
            reduction.dump(spawn.get_preparation_data(process_obj._name), data)
            reduction.dump(process_obj, data)
        finally:
            multiprocessing.context.set_spawning_popen(None)
        self.sentinel, data_w = _shared[0].connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        parent_w = os.dup(data_w)  # the child sees its parent gone when this closes
        self.finalizer = util.Finalize(
            self,
            util.close_fds,  # type: ignore[attr-defined]
            (parent_w, self.sentinel),
        )
        with open(data_w, "wb", closefd=True) as pipe:
            pipe.write(data.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _SharedForkServerProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _SharedPopen(process_obj)


class InheritedFd:
    """A file descriptor a forked child receives (a duplicate, sent to the fork server)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        # Only while multiprocessing pickles a Process for the fork server.
        return (_detach, (reduction.DupFd(self.fd),))


def _detach(duplicate: Any) -> int:
    return int(duplicate.detach())


def _run(argv: list[str], env: dict[str, str], cwd: str, fds: tuple[int, int, int]) -> None:
    """In the child: become ``python <argv>`` (a script, or ``-m <module>``) started with
    ``env`` in ``cwd`` and the standard streams ``fds``; its exit status is the process's
    (multiprocessing reports it, or -signal)."""
    present = [name for name in NOT_PRELOADED if name in sys.modules]
    assert not present, f"the fork server imported {present}"
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.argv = list(argv)
    # As the interpreter does for a script (its directory) or ``-m`` (the working directory).
    sys.path.insert(0, cwd)
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]  # run_module puts the module's path in sys.argv[0]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(os.path.join(cwd, argv[0]), run_name="__main__")
    finally:
        # multiprocessing ends its children with os._exit: what the interpreter's exit would run.
        import atexit

        atexit._run_exitfuncs()


class ForkedProcess:
    """What the tests use of ``subprocess.Popen``, over a forked ``multiprocessing.Process``."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
    ) -> None:
        """``stdout``/``stderr``: files the child writes (as Popen's); None is /dev/null for
        stdout, a pipe for stderr (``self.stderr``), as ``Server.start`` has them."""
        self.args = argv
        self.stdout = None
        self.stderr: IO[bytes] | None = None
        devnull_in = os.open(os.devnull, os.O_RDONLY)
        devnull_out = os.open(os.devnull, os.O_WRONLY)
        pipe_w = -1
        try:
            if stderr is None:
                pipe_r, pipe_w = os.pipe()
                self.stderr = open(pipe_r, "rb")  # noqa: SIM115 (closed with the process)
            fds = (
                devnull_in,
                stdout.fileno() if stdout else devnull_out,
                stderr.fileno() if stderr else pipe_w,
            )
            process_class = (
                _SharedForkServerProcess if os.environ.get(SHARED_ADDRESS) else _context().Process
            )
            self._process = process_class(
                target=_run,
                args=(argv, env, cwd, tuple(InheritedFd(fd) for fd in fds)),
                name="server:" + " ".join(argv),
                # A server a failed test left running is terminated at exit, not waited for.
                daemon=True,
            )
            self._process.start()
        finally:
            for fd in (devnull_in, devnull_out, pipe_w):
                if fd >= 0:
                    os.close(fd)
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def run(
    argv: list[str], *, env: dict[str, str], cwd: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, *argv], capture_output=True, text=True)``, forked
    (unless ``TEST_SERVER_FORK=0``)."""
    if not enabled():
        return subprocess.run(
            [sys.executable, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = ForkedProcess(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        # The child wrote through the same open files (shared offsets): read from the start.
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            [sys.executable, *argv], returncode, out.read().decode(), err.read().decode()
        )
