"""The arena's page controls in the browser: the "names its model" flag on a column (the vote
then does not count, and the page says so), tags on a comparison, and the leaderboard filtered
by tag, scope and date."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.browser.test_playground_browser import Playground, playground  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODELS = (("demo", "demo-echo"), ("demo", "demo-fast"))


@pytest.fixture(scope="module")
def page_vendors() -> bool:
    """The demo provider only: no vendor SDK for the server to import."""
    return False


def blind_battle(view: Playground, prompt: str) -> str:
    view.open()
    view.choose(*MODELS)
    view.page.check("#blind")
    sid = view.compare(prompt, *MODELS)
    view.wait_status(0, "complete")
    view.wait_status(1, "complete")
    return sid


def board(view: Playground, *, scope: str = "me", tag: str = "", since: str = "") -> None:
    page = view.page
    if page.locator("#leaderboard").is_hidden():
        page.click("#show-leaderboard")
    page.select_option("#board-scope", scope)
    page.fill("#board-tag", tag)
    page.fill("#board-since", since)
    page.locator("#board-form").get_by_role("button", name="Show").click()


def test_a_flagged_answer_voids_the_vote_and_the_page_shows_it(
    playground: Playground,  # noqa: F811 (the fixture imported above)
    screenshots: Path,
) -> None:
    page, expect = playground.page, playground.expect
    sid = blind_battle(playground, "Name yourself, then answer: 2 + 2?")
    page.locator("#arena").get_by_role("button", name="A", exact=True).click()
    expect(page.locator("#arena-status")).to_have_text("Your vote: A")
    void = page.locator("#arena-void")
    expect(void).to_be_hidden()
    flag = playground.column(1).get_by_role("button", name="Names its model")
    flag.click()
    expect(page.locator("#arena-status")).to_have_text("Answer B flagged: it names its model")
    expect(void).to_be_visible()
    expect(void).to_contain_text("does not count")
    expect(playground.column(1)).to_have_attribute("data-flagged", "true")
    state = playground.rest(f"/sessions/{sid}/arena")
    assert state["flags"] == [{"turn": 0, "key": "B"}]
    assert state["votes"][0]["void"] is True and state["votes"][0]["counted"] is False
    page.screenshot(path=str(screenshots / "arena-flagged.png"))
    # Withdrawn: the vote counts again.
    playground.column(1).get_by_role("button", name="Flagged: names its model").click()
    expect(page.locator("#arena-status")).to_have_text("Flag on answer B withdrawn")
    expect(void).to_be_hidden()
    assert playground.rest(f"/sessions/{sid}/arena")["votes"][0]["counted"] is True
    # Flagged again and revealed: the flag is settled and the vote stays out of the board.
    playground.column(1).get_by_role("button", name="Names its model").click()
    expect(void).to_be_visible()
    page.fill("#arena-tags", "selfnamed")
    page.locator("#tags-form").get_by_role("button", name="Save tags").click()
    expect(page.locator("#arena-status")).to_have_text("Tags: selfnamed")
    page.click("#reveal")
    expect(page.locator("#reveal")).to_be_hidden()
    expect(playground.column(1).locator("button.flag")).to_be_disabled()
    expect(void).to_be_visible()
    # Opened again from its URL, the page shows the saved flag and tags.
    playground.open(f"?session={sid}")
    expect(playground.column(1).locator("button.flag")).to_have_text("Flagged: names its model")
    expect(page.locator("#arena-tags")).to_have_value("selfnamed")
    expect(void).to_be_visible()
    board(playground, tag="selfnamed")
    expect(page.locator("#board-status")).to_contain_text("No blind votes yet")
    expect(page.locator("#board-rows tr")).to_have_count(0)


def test_tags_filter_the_leaderboard_by_topic_scope_and_date(
    playground: Playground,  # noqa: F811
    screenshots: Path,
) -> None:
    page, expect = playground.page, playground.expect
    sid = blind_battle(playground, "Write a relay in Python")
    page.fill("#arena-tags", " Code , MATH,code")
    page.press("#arena-tags", "Enter")
    expect(page.locator("#arena-status")).to_have_text("Tags: code, math")
    expect(page.locator("#arena-tags")).to_have_value("code, math")
    page.locator("#arena").get_by_role("button", name="B", exact=True).click()
    expect(page.locator("#arena-status")).to_have_text("Your vote: B")
    page.click("#reveal")
    expect(page.locator("#reveal")).to_be_hidden()
    saved = playground.rest(f"/sessions/{sid}")
    winner = next(m["modelName"] for m in saved["models"] if m["key"] == "B")
    assert playground.rest(f"/sessions/{sid}/arena")["tags"] == ["code", "math"]
    rows = page.locator("#board-rows tr")
    status = page.locator("#board-status")
    board(playground, tag="code")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(winner)
    expect(status).to_have_text("1 vote, 1 battle")
    page.screenshot(path=str(screenshots / "leaderboard-tag.png"))
    board(playground, tag="prose")
    expect(status).to_contain_text("No blind votes yet")
    expect(rows).to_have_count(0)
    board(playground, scope="all", tag="math")
    expect(rows).to_have_count(2)
    expect(status).to_have_text("1 vote, 1 battle")
    board(playground, tag="code", since="2000-01-01")
    expect(rows).to_have_count(2)
    board(playground, tag="code", since="2099-01-01")
    expect(status).to_contain_text("No blind votes yet")


def test_a_vote_on_a_follow_up_turn_from_the_page_is_stored_and_ranked(
    playground: Playground,  # noqa: F811
    screenshots: Path,
) -> None:
    page, expect = playground.page, playground.expect
    sid = blind_battle(playground, "Pick a number")
    page.fill("#arena-tags", "turnvote")
    page.locator("#tags-form").get_by_role("button", name="Save tags").click()
    expect(page.locator("#arena-status")).to_have_text("Tags: turnvote")
    turn_one = page.get_by_role("group", name="Vote on turn 1")
    expect(turn_one).to_have_count(0)  # no follow-up yet: only the first turn's buttons
    page.fill("#followup-prompt", "Now another one")
    page.click("#followup-send")
    expect(playground.column(0).locator(".turn")).to_have_count(2)
    playground.wait_status(0, "complete")
    playground.wait_status(1, "complete")
    expect(turn_one).to_be_visible()
    undo = turn_one.get_by_role("button", name="Undo vote")
    expect(undo).to_be_disabled()
    turn_one.get_by_role("button", name="A", exact=True).click()
    expect(page.locator("#arena-status")).to_have_text("Your vote on turn 1: A")
    expect(turn_one.get_by_role("button", name="A", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    # The first turn's controls are untouched: that turn has no vote.
    expect(page.locator("#unvote")).to_be_disabled()
    votes = playground.rest(f"/sessions/{sid}/arena")["votes"]
    assert [(v["turn"], v["winner"], v["counted"]) for v in votes] == [(1, "A", True)]
    undo.click()
    expect(page.locator("#arena-status")).to_have_text("Vote on turn 1 withdrawn")
    assert playground.rest(f"/sessions/{sid}/arena")["votes"] == []
    turn_one.get_by_role("button", name="Both bad").click()
    expect(page.locator("#arena-status")).to_have_text("Your vote on turn 1: Both bad")
    turn_one.get_by_role("button", name="B", exact=True).click()  # changed before the reveal
    expect(page.locator("#arena-status")).to_have_text("Your vote on turn 1: B")
    page.screenshot(path=str(screenshots / "arena-turn-vote.png"))
    page.click("#reveal")
    expect(page.locator("#reveal")).to_be_hidden()
    saved = playground.rest(f"/sessions/{sid}")
    winner = next(m["modelName"] for m in saved["models"] if m["key"] == "B")
    votes = playground.rest(f"/sessions/{sid}/arena")["votes"]
    assert [(v["turn"], v["winner"], v["counted"]) for v in votes] == [(1, "B", True)]
    ranked = playground.rest("/leaderboard?scope=me&tag=turnvote")
    assert (ranked["votes"], ranked["battles"]) == (1, 1)
    top = ranked["models"][0]
    assert (top["model"], top["wins"], top["rank"]) == (winner, 1, 1)
    # Opened again: the turn's saved vote is shown, and locked ones still show as pressed.
    playground.open(f"?session={sid}")
    expect(turn_one.get_by_role("button", name="B", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    board(playground, tag="turnvote")
    expect(page.locator("#board-rows tr")).to_have_count(2)
    expect(page.locator("#board-rows tr").nth(0)).to_contain_text(winner)
