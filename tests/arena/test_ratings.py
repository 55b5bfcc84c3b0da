"""The Bradley-Terry fit and its bootstrap intervals against tournaments with known strengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arena.ratings import BASE, SCALE, PairCount, ratings_fit


def tournament(
    strengths: list[float], games: int, seed: int, tie_rate: float = 0.0
) -> list[PairCount]:
    """Every pair plays ``games`` battles under the Bradley-Terry model with these strengths
    (natural-log scale); a share ``tie_rate`` of battles are ties instead."""
    rng = np.random.default_rng(seed)
    counts = []
    for a in range(len(strengths)):
        for b in range(a + 1, len(strengths)):
            p = 1.0 / (1.0 + math.exp(strengths[b] - strengths[a]))
            ties = int(rng.binomial(games, tie_rate))
            a_wins = int(rng.binomial(games - ties, p))
            counts.append(PairCount(f"m{a}", f"m{b}", a_wins, games - ties - a_wins, ties))
    return counts


def test_a_tournament_recovers_the_order_of_known_strengths() -> None:
    strengths = [1.2, 0.7, 0.3, 0.0, -0.4, -0.9, -1.4]
    rated = ratings_fit(counts=tournament(strengths, games=200, seed=7, tie_rate=0.1))
    assert [r.model for r in rated] == [f"m{n}" for n in range(len(strengths))]
    # The fitted gaps are the true ones (on the 400-point scale), within sampling error.
    truth = np.array(strengths) - np.mean(strengths)
    fitted = np.array([(r.rating - BASE) / SCALE for r in sorted(rated, key=lambda r: r.model)])
    assert np.max(np.abs(fitted - truth)) < 0.2
    assert all(r.lower < r.rating < r.upper for r in rated)
    assert all(r.battles == 6 * 200 for r in rated)


def test_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    strengths = [0.8, 0.3, 0.0, -0.3, -0.8]
    truth = np.array(strengths) - np.mean(strengths)
    covered = total = 0
    for seed in range(40):
        rated = ratings_fit(counts=tournament(strengths, games=40, seed=1000 + seed), seed=seed)
        for r in rated:
            true = BASE + SCALE * truth[int(r.model[1:])]
            covered += r.lower <= true <= r.upper
            total += 1
    coverage = covered / total
    assert 0.8 <= coverage <= 1.0, coverage


def test_ties_count_as_half_wins() -> None:
    # 30 wins, 10 losses and 20 ties = 40 : 20, odds 2:1 -> a gap of 400·log10(2) ≈ 120 points.
    (top, bottom) = ratings_fit(counts=[PairCount("a", "b", 30, 10, 20)], rounds=0)
    assert top.model == "a"
    assert top.rating - bottom.rating == pytest.approx(400 * math.log10(2), abs=2)
    assert (top.wins, top.losses, top.ties, top.battles) == (30, 10, 20, 60)
    assert top.win_rate == pytest.approx(0.5)
    even = ratings_fit(counts=[PairCount("a", "b", 0, 0, 12)], rounds=0)
    assert even[0].rating == pytest.approx(even[1].rating) == pytest.approx(BASE)


def test_an_unbeaten_model_gets_a_finite_top_rating() -> None:
    rated = ratings_fit(
        counts=[
            PairCount("a", "b", 8, 0, 0),
            PairCount("b", "c", 5, 3, 0),
            PairCount("a", "c", 6, 0, 0),
        ]
    )
    assert [r.model for r in rated] == ["a", "b", "c"]
    assert all(math.isfinite(v) for r in rated for v in (r.rating, r.lower, r.upper))


def test_same_votes_same_intervals_and_nothing_for_no_votes() -> None:
    counts = tournament([0.5, 0.0, -0.5], games=30, seed=3)
    assert ratings_fit(counts=counts) == ratings_fit(counts=counts)
    assert ratings_fit(counts=[]) == []
    assert ratings_fit(counts=[PairCount("a", "a", 3, 1, 0)]) == []
