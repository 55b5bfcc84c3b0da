"""Signing in on the playground page: the development key's tokens are replaced before they
expire, and with Clerk the page loads clerk-js from the instance's Frontend API and uses its
session tokens (a stand-in clerk-js served at that origin hands out real RS256 tokens)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstream
from tests.servers import ProcessAuth, ProcessDatabases, Server
from tests.tokens import TEST_FRONTEND_API, TEST_PUBLISHABLE_KEY
from tests.web.browser.conftest import page_server_env, page_server_warm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN_TTL = 8  # seconds: the page must replace the token within that


class Frames:
    """The page's socket frames, both ways."""

    def __init__(self, page: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def tokens(self) -> list[str]:
        return [f["data"]["token"] for f in self.sent if f["event"] == "authenticate"]

    def authenticated(self) -> list[str]:
        return [f["data"]["userId"] for f in self.received if f["event"] == "authenticated"]


CLERK_ORIGIN = f"https://{TEST_FRONTEND_API}"
# Stands in for clerk-js at the instance's Frontend API: the calls the page makes, with tokens
# the test mints (real RS256, verified by the server with CLERK_JWT_KEY).
FAKE_CLERK_JS = f"""
(() => {{
  const script = document.currentScript;
  window.__clerkKey = script && script.getAttribute("data-clerk-publishable-key");
  const session = {{
    async getToken() {{
      const response = await fetch("{CLERK_ORIGIN}/test-token");
      return response.text();
    }},
  }};
  window.Clerk = {{
    user: null,
    session: null,
    async load() {{ this.user = {{ id: "user_clerk" }}; this.session = session; }},
    async redirectToSignIn() {{ window.__redirected = true; }},
    async signOut() {{}},
  }};
}})();
"""


@pytest.fixture
def start_server(
    process_databases: ProcessDatabases, tmp_path: Path, upstream: FakeUpstream, browser: Any
) -> Iterator[Any]:
    servers: list[Server] = []
    stack = contextlib.ExitStack()

    def start(warm_token: str | None = None, **extra: str) -> Server:
        url = stack.enter_context(process_databases.copy())
        # Sign-in only, and the demo provider: no vendor key (the page still lists the vendors).
        env = {**page_server_env(url, tmp_path, upstream, vendors=False), **extra}
        server = Server(env).start(stdout=tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        page_server_warm(server, warm_token)
        return server

    with stack:
        try:
            yield start
        finally:
            for server in servers:
                server.stop()


def wait_for(page: Any, condition: Any, what: str, within: float = 30.0) -> None:
    """Let the page run (and its events arrive) until ``condition()`` holds."""
    waited = 0.0
    while not condition():
        assert waited < within, f"timed out waiting for {what}"
        page.wait_for_timeout(100)
        waited += 0.1


def run_comparison(page: Any, prompt: str) -> None:
    from playwright.sync_api import expect

    page.fill("#prompt", prompt)
    page.click("#send")
    expect(page.locator('#columns [data-metric="status"]').first).to_have_text(
        "complete", timeout=30_000
    )
    expect(page.locator("#history-list")).to_contain_text(prompt, timeout=30_000)


def no_token_stored(page: Any, tokens: list[str]) -> None:
    stored = page.evaluate(
        "JSON.stringify([localStorage, sessionStorage, document.cookie, location.href])"
    )
    assert not any(token in stored for token in tokens)


def test_development_tokens_are_replaced_before_they_expire(
    browser: Any, start_server: Any
) -> None:
    from playwright.sync_api import expect

    server = start_server(PLAYGROUND_DEV_TOKEN_TTL_SECONDS=str(TOKEN_TTL))
    context = browser.new_context()
    try:
        page = context.new_page()
        frames = Frames(page)
        page.goto(f"{server.url}/playground/")
        expect(page.locator("#auth-status")).to_contain_text(
            "Signed in as user_dev with the development key"
        )
        # Three tokens: the last was sent after the first one expired (refresh every >= 5 s).
        wait_for(page, lambda: len(frames.authenticated()) >= 3, "two token refreshes")
        tokens = frames.tokens()
        assert len(set(tokens)) == len(tokens) >= 3
        assert set(frames.authenticated()) == {"user_dev"}
        run_comparison(page, "After the first token expired")
        no_token_stored(page, tokens)
    finally:
        context.close()


def test_clerk_signs_in_with_clerk_js_from_the_frontend_api(
    browser: Any, start_server: Any
) -> None:
    from playwright.sync_api import expect

    auth = ProcessAuth()
    server = start_server(
        auth.token("user_warm"), CLERK_PUBLISHABLE_KEY=TEST_PUBLISHABLE_KEY, **auth.env()
    )
    context = browser.new_context()
    served: list[str] = []

    def clerk(route: Any) -> None:
        url = route.request.url
        served.append(url)
        cors = {"Access-Control-Allow-Origin": server.url}
        if url.endswith("/npm/@clerk/clerk-js@5/dist/clerk.browser.js"):
            route.fulfill(body=FAKE_CLERK_JS, content_type="text/javascript", headers=cors)
        elif url.endswith("/test-token"):
            token = auth.token("user_clerk", ttl=TOKEN_TTL)
            route.fulfill(body=token, content_type="text/plain", headers=cors)
        else:
            route.fulfill(status=404, headers=cors)

    context.route(f"{CLERK_ORIGIN}/**", clerk)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        # Which request failed (the console's message does not say).
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )
        frames = Frames(page)
        page.goto(f"{server.url}/playground/")
        expect(page.locator("#auth-status")).to_have_text("Signed in as user_clerk")
        assert page.evaluate("window.__clerkKey") == TEST_PUBLISHABLE_KEY
        assert page.evaluate("window.__redirected") is None
        wait_for(page, lambda: len(frames.authenticated()) >= 2, "a token refresh")
        assert set(frames.authenticated()) == {"user_clerk"}
        run_comparison(page, "Signed in with Clerk")
        no_token_stored(page, frames.tokens())
        assert problems == []
    finally:
        context.close()
