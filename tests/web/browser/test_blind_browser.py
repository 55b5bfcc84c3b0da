"""A blind battle in the browser: start, vote, reveal, then the leaderboard lists both models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.browser.test_playground_browser import Playground, playground  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAMES = ("demo-echo", "demo-fast", "Demo · ", "demo ·")


@pytest.fixture(scope="module")
def page_vendors() -> bool:
    """The demo provider only: no vendor SDK for the server to import."""
    return False


def visible_names(view: Playground) -> list[str]:
    """Model names in the comparison's visible text (the compose form lists what was picked,
    not which column is which, and is left out)."""
    text = (
        view.page.locator("#session").inner_text() + view.page.locator("#history-list").inner_text()
    )
    return [name for name in NAMES if name.lower() in text.lower()]


def test_blind_battle_from_start_to_vote_to_reveal_and_the_leaderboard(
    playground: Playground,  # noqa: F811 (the fixture imported above)
    screenshots: Path,
) -> None:
    page = playground.page
    playground.open()
    playground.choose(("demo", "demo-echo"), ("demo", "demo-fast"))
    page.check("#blind")
    sid = playground.compare("Which is faster?", ("demo", "demo-echo"), ("demo", "demo-fast"))
    playground.wait_status(0, "complete")
    playground.wait_status(1, "complete")
    titles = page.locator("#columns .column-title")
    playground.expect(titles).to_have_text(["Model A", "Model B"])
    assert visible_names(playground) == []
    page.screenshot(path=str(screenshots / "blind-before-reveal.png"))
    arena = page.locator("#arena")
    arena.get_by_role("button", name="A", exact=True).click()
    playground.expect(page.locator("#arena-status")).to_have_text("Your vote: A")
    page.click("#unvote")
    playground.expect(page.locator("#arena-status")).to_have_text("Vote withdrawn")
    arena.get_by_role("button", name="B", exact=True).click()
    playground.expect(page.locator("#arena-status")).to_have_text("Your vote: B")
    assert visible_names(playground) == []
    page.click("#reveal")
    playground.expect(page.locator("#reveal")).to_be_hidden()
    playground.expect(titles.nth(0)).to_contain_text("demo")
    session = page.locator("#session")
    playground.expect(session).to_contain_text("demo-echo")
    playground.expect(session).to_contain_text("demo-fast")
    saved = playground.rest(f"/sessions/{sid}")
    winner = next(m["modelName"] for m in saved["models"] if m["key"] == "B")
    playground.expect(titles.nth(1)).to_contain_text(winner)
    page.screenshot(path=str(screenshots / "blind-after-reveal.png"))
    page.click("#share")
    shared = re.compile(re.escape(f"{playground.server.url}/shared/") + r"[\w-]{20,}$")
    playground.expect(page.locator("#share-link")).to_have_value(shared)
    assert shared.match(str(page.evaluate("navigator.clipboard.readText()")))
    page.click("#show-leaderboard")
    rows = page.locator("#board-rows tr")
    playground.expect(rows).to_have_count(2)
    playground.expect(rows.nth(0)).to_contain_text(winner)
    playground.expect(page.locator("#leaderboard")).to_contain_text("demo-echo")
    playground.expect(page.locator("#leaderboard")).to_contain_text("demo-fast")
    playground.expect(page.locator("#board-status")).to_contain_text("1 vote")
    page.screenshot(path=str(screenshots / "leaderboard.png"))
