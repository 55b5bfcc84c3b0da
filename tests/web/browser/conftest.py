"""Browser tests of the playground page: Debian's chromium driven by Playwright (never downloaded;
``playwright install`` is not used), against a real server process with the fake upstream.

Debian's ``chromium-headless-shell`` (the same Chromium release built as its headless shell, what
Playwright itself runs for headless tests) is used when installed: the full browser's headless
mode runs a browser window per page, ~30 % more CPU for the same tests (docs/benchmarks.md).

Without chromium the tests skip with a one-line reason, except under ``REQUIRE_SERVICES=1`` (CI),
where a missing browser fails them.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.fake_upstream import FakeUpstream, run_in_thread
from tests.fake_upstream.fixtures import TEST_API_KEY
from tests.servers import ProcessDatabases, Server, server_env

CHROMIUM = (
    os.environ.get("CHROMIUM_PATH")
    or shutil.which("chromium-headless-shell")
    or shutil.which("chromium")
    or "/usr/bin/chromium"
)


def _require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        reason = f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)


# Chromium's new headless mode gives each page a browser window, and each window loads the
# omnibox's WebUI popups in a renderer of its own (chrome://omnibox-popup.top-chrome): 0.6-0.8 s
# of CPU per page, more than the page under test. Chromium honours only the last
# --disable-features, so these are added to the list Playwright passes (read from the command
# line of a first launch), not passed as a second switch that would replace it.
DISABLED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")
_playwright_disable_features: list[str] = []  # Playwright's own switch, once read


def _command_line(marker: str) -> list[str]:
    """The command line of the chromium browser process launched with ``marker``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                args = [a.decode() for a in file.read().split(b"\0") if a]
        except OSError:
            continue
        if marker in args and not any(a.startswith("--type=") for a in args):
            return args
    raise RuntimeError(f"no chromium process with {marker}")


def _disable_features_switch(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--disable-features=")]


def launch_chromium(playwright: Any) -> Any:
    """Headless chromium with Playwright's switches, its --disable-features plus ours."""
    if not _playwright_disable_features:
        marker = f"--playground-probe={uuid.uuid4().hex}"
        probe = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[marker])
        try:
            _playwright_disable_features.extend(_disable_features_switch(_command_line(marker)))
        finally:
            probe.close()
    default = _playwright_disable_features  # [] if Playwright passes none: nothing to replace
    merged = ",".join([*(d.split("=", 1)[1] for d in default), *DISABLED_FEATURES])
    marker = f"--playground-probe={uuid.uuid4().hex}"
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        ignore_default_args=default,
        args=[f"--disable-features={merged}", marker],
    )
    switches = _disable_features_switch(_command_line(marker))
    assert switches == [f"--disable-features={merged}"], switches  # one switch, all features
    return chromium


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Playwright driver and headless chromium for this package's modules (``make test`` runs
    them on one worker, tests/scheduling.py). Playwright's sync API runs an event loop in this
    thread while it is open: only this package's tests, which have none, run inside its scope."""
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait for the page (they poll; a pass returns at once): Playwright's default 5 s
    # is less than a busy 2-core machine takes to serve a server process's first page.
    expect.set_options(timeout=30_000)

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save screenshots of the page's main states (test artifacts)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with run_in_thread() as fake:
        fake.catalogue = {
            "anthropic": [
                {"id": "claude-haiku-4-5-20251001", "label": "Claude Haiku 4.5"},
                {"id": "claude-sonnet-4-6", "label": "Claude Sonnet 4.6"},
            ],
            "openai": [{"id": "gpt-4.1-mini"}, {"id": "gpt-4.1"}],
            "google": [{"id": "gemini-2.5-flash", "label": "Gemini 2.5 Flash"}],
        }
        yield fake


def page_server_env(
    database_url: str, workdir: Path, upstream: FakeUpstream, *, vendors: bool = True
) -> dict[str, str]:
    """A DEBUG server (development sign-in) whose vendors all point at the fake upstream; without
    ``vendors``, the demo provider only (no vendor SDK to import: ~1.5 s of CPU per start)."""
    vendor_env = {
        "ANTHROPIC_API_KEY": TEST_API_KEY,
        "ANTHROPIC_BASE_URL": upstream.url,
        "ANTHROPIC_MAX_RETRIES": "0",
        "OPENAI_API_KEY": TEST_API_KEY,
        "OPENAI_BASE_URL": f"{upstream.url}/v1",
        "OPENAI_MAX_RETRIES": "0",
        "GOOGLE_GEMINI_API_KEY": TEST_API_KEY,
        "GOOGLE_GEMINI_BASE_URL": upstream.url,
        "GOOGLE_GEMINI_MAX_RETRIES": "0",
    }
    return server_env(
        database_url,
        workdir,
        **(vendor_env if vendors else {}),
        DEMO_TOKENS_PER_SECOND="40",
        DEMO_FIRST_TOKEN_DELAY="0.05",
        PLAYGROUND_MAX_RUNNING_PER_USER="50",
        PLAYGROUND_MAX_STARTS_PER_MINUTE="500",
        PLAYGROUND_FLUSH_INTERVAL="0.2",
    )


def page_server_warm(server: Server, token: str | None = None, timeout: float = 180.0) -> None:
    """Have a new server load what every page asks for first: ``/models`` lists each vendor
    alias, which imports that vendor's SDK (11 s of CPU on a slow machine, 20-50 s when it is
    busy). Once per server, here, rather than inside a test's wait for a ready page. ``token``:
    one the server accepts; by default a development token, minted as the page does."""
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    if token is None:
        opener.open(f"{server.url}/playground/", timeout=timeout).close()
        csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
        mint = urllib.request.Request(
            f"{server.url}/playground/dev-token",
            method="POST",
            headers={"X-CSRFToken": csrf or ""},
        )
        with opener.open(mint, timeout=timeout) as response:
            token = json.load(response)["token"]
    models = urllib.request.Request(
        f"{server.url}/models", headers={"Authorization": f"Bearer {token}"}
    )
    opener.open(models, timeout=timeout).close()


@pytest.fixture(scope="module")
def page_vendors() -> bool:
    """Whether the module's page server has the vendors (a module whose pages use only the demo
    provider overrides this with False)."""
    return True


@pytest.fixture(scope="module")
def page_server(
    process_databases: ProcessDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
    browser: Any,
    page_vendors: bool,
) -> Iterator[Server]:
    """One server process per test module (started after the browser check)."""
    workdir = tmp_path_factory.mktemp("page-server")
    with process_databases.copy() as url:
        server = Server(page_server_env(url, workdir, upstream, vendors=page_vendors))
        server.start(stdout=workdir / "server.log")
        try:
            page_server_warm(server)
            yield server
        finally:
            server.stop()
