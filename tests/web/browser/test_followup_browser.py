"""Follow-up turns on the playground page, in a real browser against a real server: the box
under the columns sends a follow-up, "Continue from this answer" continues every model from one
column, the columns show the conversation turn by turn (also after a reload)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_upstream import FakeUpstream
from tests.web.browser.test_playground_browser import Playground, playground  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLAUDE = ("anthropic", "claude-haiku-4-5-20251001")
GPT = ("openai", "gpt-4.1-mini")


def chat(upstream: FakeUpstream, scenario: str, vendor: str) -> list[tuple[str, str]]:
    """The last request's conversation as the vendor received it."""
    body = [r for r in upstream.requests_for(scenario) if r.vendor == vendor][-1].body
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]


def test_a_follow_up_and_a_continue_from_in_the_page(
    playground: Playground,  # noqa: F811
    upstream: FakeUpstream,
    screenshots: Path,
) -> None:
    upstream.script(
        "pagefu.anthropic", deltas=["Claude ", "<script>window.pwned = 1</script>says hi"]
    )
    marker = upstream.script("pagefu", deltas=["GPT ", "says **hello**"])
    page = playground.page
    playground.expect.set_options(timeout=30_000)  # a busy machine: the page's first load
    playground.open()
    sid = playground.compare(f"Greet me {marker}", CLAUDE, GPT)
    for index in range(2):
        playground.wait_status(index, "complete")

    page.fill("#followup-prompt", "Why?")
    page.click("#followup-send")
    playground.expect(playground.column(0).locator(".turn")).to_have_count(2)
    for index in range(2):
        playground.wait_status(index, "complete")
    turns = playground.column(1).locator(".column-turns")
    playground.expect(turns.locator(".turn").nth(0)).to_contain_text(f"Greet me {marker}")
    playground.expect(turns.locator(".turn").nth(0)).to_contain_text("GPT says hello")
    playground.expect(turns.locator(".turn").nth(1)).to_have_text("Turn 1: Why?")
    playground.expect(page.locator("#followup-prompt")).to_have_value("")
    # Model output in the history is sanitised like the live answer: no script survives.
    assert page.locator(".column-turns script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert chat(upstream, "pagefu", "openai") == [
        ("user", f"Greet me {marker}"),
        ("assistant", "GPT says **hello**"),
        ("user", "Why?"),
    ]

    page.fill("#followup-prompt", "Summarise.")
    playground.column(0).get_by_role("button", name="Continue from this answer").click()
    playground.expect(playground.column(1).locator(".turn")).to_have_count(3)
    for index in range(2):
        playground.wait_status(index, "complete")
    claude_thread = [
        ("user", f"Greet me {marker}"),
        ("assistant", "Claude <script>window.pwned = 1</script>says hi"),
        ("user", "Why?"),
        ("assistant", "Claude <script>window.pwned = 1</script>says hi"),
        ("user", "Summarise."),
    ]
    assert chat(upstream, "pagefu", "openai") == claude_thread
    assert chat(upstream, "pagefu.anthropic", "anthropic") == claude_thread
    playground.expect(playground.column(1).locator(".turn").nth(2)).to_have_text(
        "Turn 2: Summarise."
    )
    page.screenshot(path=str(screenshots / "follow-up-turns.png"))

    detail = playground.rest(f"/sessions/{sid}")
    assert [(t["turn"], t["mode"]) for t in detail["turns"]] == [
        (0, None),
        (1, "followUp"),
        (2, "continueFrom"),
    ]

    # A reload rebuilds the conversation from the snapshot.
    page.reload()
    playground.expect(page.locator("body[data-ready=true]")).to_be_attached()
    playground.expect(playground.column(0).locator(".turn")).to_have_count(3)
    playground.expect(playground.column(0).locator(".turn").nth(1)).to_contain_text("Why?")
    playground.wait_status(0, "complete")
    assert page.locator(".column-turns script").count() == 0
    assert page.evaluate("window.pwned") is None
