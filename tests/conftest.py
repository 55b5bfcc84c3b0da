"""Suite-wide fixtures: external services (PostgreSQL, Redis) and their markers.

Tests that need a service carry ``@pytest.mark.redis`` or ``@pytest.mark.postgres``. When the
service is not answering they skip with a one-line reason, except under ``REQUIRE_SERVICES=1``
(CI), where a missing service fails the test.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connections

from tests import serverfork
from tests.servers import ROOT, SHARED_TEMPLATE, ProcessDatabases

pytest_plugins = ["tests.auth_fixtures"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") == "1"
TEST_REDIS_URL = os.environ.get("REDIS_URL") or os.environ.get(
    "TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)


def _tcp_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def redis_available() -> bool:
    parsed = urlparse(TEST_REDIS_URL)
    return _tcp_reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379)


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    # Connections opened in asgiref's sync threads cannot be closed from the test thread; with
    # persistent connections (the production default) they would keep the test database from
    # being dropped at the end. Server processes started by the suite keep the default.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with DELETE instead of TRUNCATE between transactional tests
        # (tests/backends/postgresql/base.py: ~30 ms instead of ~1 s per test on this machine).
        settings.DATABASES["default"]["ENGINE"] = "tests.backends.postgresql"
        with contextlib.suppress(AttributeError):  # made with the old engine at Django's setup
            del connections["default"]
    # This shared 2-core machine (and a cold SDK import in the test's own loop) holds event
    # loops back by up to seconds: the lag bound would refuse starts at random. Its tests
    # (tests/comparisons/test_backpressure.py) set it explicitly.
    settings.PLAYGROUND_MAX_LOOP_LAG_SECONDS = 0
    # The default PBKDF2 (1,000,000 iterations) costs ~0.5 s of CPU per hash and the admin tests
    # hash a dozen passwords; what they check (a wrong password fails, the lock-out) does not
    # depend on the algorithm. Server processes keep the production hashers.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if not hasattr(config, "workerinput"):  # once per run, before any xdist worker starts
        _compile_project_bytecode()
        _write_rewritten_test_modules(config)
        if getattr(config.option, "numprocesses", None):
            serverfork.start_shared()  # its preload runs while the workers collect
            ProcessDatabases.start_shared_template()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(SHARED_TEMPLATE):
        ProcessDatabases(Path(tempfile.gettempdir())).drop_shared_template()


def _compile_project_bytecode() -> None:
    """Byte-compile the project's own packages into their (git-ignored) ``__pycache__``.

    With PYTHONDONTWRITEBYTECODE=1 (containers, CI) no process writes bytecode, and the ~100
    server and settings subprocesses the suite starts each compiled the project's sources again
    (``make env`` compiles only the virtualenv). Files already up to date are skipped.
    """
    for package in ("playground", "comparisons", "providers", "accounts", "arena", "tests"):
        compileall.compile_dir(ROOT / package, quiet=2, workers=1)


def _write_rewritten_test_modules(config: pytest.Config) -> None:
    """Write pytest's cache of assertion-rewritten modules once, for every xdist worker.

    Under PYTHONDONTWRITEBYTECODE=1 pytest reads that cache but never writes it, so each worker
    parsed and rewrote the ~70 test modules and the ~40 of its plugins' modules itself
    (docs/benchmarks.md). The plugins are rewritten by now; the test modules are not imported
    in this process, so their rewrite is chosen as pytest chooses it (test_*.py, conftest.py and
    the plugins named in ``pytest_plugins``).
    """
    from _pytest.assertion import rewrite

    state = config.stash.get(rewrite.assertstate_key, None)
    if state is None or state.hook is None:  # --assert=plain
        return
    paths = {Path(fn) for fn in state.hook._rewritten_names.values()}
    paths.add(ROOT / "tests" / "auth_fixtures.py")
    paths.update(ROOT.glob("tests/**/test_*.py"))
    paths.update(ROOT.glob("tests/**/conftest.py"))
    for path in sorted(paths):
        pyc = rewrite.get_cache_dir(path) / (path.name[:-3] + rewrite.PYC_TAIL)
        if rewrite._read_pyc(path, pyc) is None:
            source_hash, code = rewrite._rewrite_test(path, config)
            with contextlib.suppress(OSError):  # a read-only directory: the worker rewrites
                pyc.parent.mkdir(exist_ok=True)
            rewrite._write_pyc(state, code, source_hash, pyc)


@pytest.hookimpl(optionalhook=True)  # no such hook under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the browser modules as one unit (tests/scheduling.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import ModulesAndOneBrowserUnit

    return ModulesAndOneBrowserUnit(config, log)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("redis") and not redis_available():
        _missing(f"Redis is not reachable at {TEST_REDIS_URL}")
    if item.get_closest_marker("postgres"):
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            _missing("DATABASE_URL does not point at PostgreSQL")


@pytest.fixture(autouse=True)
def _channel_layers_of_this_test() -> Iterator[None]:
    """Each test (each its own event loop) makes its own channel layers: a channels_redis layer
    made in an earlier test keeps locks and connections of that test's loop, and a receive that
    test left holding a lock failed a later one ("is bound to a different event loop")."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _no_process_start_here() -> Iterator[None]:
    """The process start-up belongs to server processes: in the test process its sweeper thread
    would outlive the test database (in-process tests use ``playground.asgi.router``)."""
    yield
    leaked = [t.name for t in threading.enumerate() if t.name == "comparison-sweeper"]
    assert not leaked, "the test ran the process start-up (playground.asgi.application)"


@pytest.fixture(scope="session")
def process_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessDatabases]:
    """Migrated databases for server processes (one migration per session, then copies)."""
    databases = ProcessDatabases(tmp_path_factory.mktemp("process-db"))
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    process_databases: ProcessDatabases,
    django_db_keepdb: bool,
) -> None:
    """Under ``make test`` the test database is a copy of the run's migrated template too (one
    ``migrate`` per run instead of one more per worker); Django's tables exist, so its test
    setup migrates nothing (``MIGRATE: False`` creates only tables that are missing)."""
    test = settings.DATABASES["default"].setdefault("TEST", {})
    if process_databases.postgres and not django_db_keepdb:
        # Each run's own name: the last run's may still be being dropped (tests/backends);
        # ``--reuse-db`` keeps its database, and its name, from run to run.
        name = test.get("NAME") or f"test_{settings.DATABASES['default']['NAME']}"
        test["NAME"] = f"{name}_{uuid.uuid4().hex[:8]}"
    if process_databases.shared_template():
        test["TEMPLATE"] = process_databases.template()
        test["MIGRATE"] = False


@pytest.fixture
def database(process_databases: ProcessDatabases) -> Iterator[str]:
    """A DATABASE_URL of a fresh, migrated database for server processes started by the test."""
    with process_databases.copy() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The Redis URL the suite uses (REDIS_URL, else TEST_REDIS_URL, else local default)."""
    return TEST_REDIS_URL


@pytest.fixture
def redis_channel_layer(settings: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """Switch the channel layer to channels-redis on the test Redis for one test."""
    from channels.layers import channel_layers

    from playground.layers import redis_channel_layer as layer_config

    settings.CHANNEL_LAYERS = {  # type: ignore[attr-defined]
        "default": layer_config(redis_url, prefix=f"test-{os.getpid()}")
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


@pytest.fixture
def memory_channel_layer(settings: pytest.FixtureRequest) -> Iterator[None]:
    """Switch the channel layer to the in-memory one for one test."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {  # type: ignore[attr-defined]
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
