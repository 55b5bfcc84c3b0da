"""The benchmark's statistics (bench/stats.py): what docs/benchmarks.md's intervals rest on."""

from __future__ import annotations

import math
import random

from bench import stats


def _clusters(shift: float, seed: int, n: int = 60, size: int = 20) -> list[list[float]]:
    rng = random.Random(seed)
    return [[shift + rng.gauss(10.0, 1.0) for _ in range(size)] for _ in range(n)]


def test_difference_interval_covers_a_known_shift_and_excludes_zero() -> None:
    slower, base = _clusters(2.0, 1), _clusters(0.0, 2)
    d = stats.difference(slower, base, 50)
    assert 1.5 < d.value < 2.5
    assert d.low < 2.0 < d.high
    assert d.low > 0


def test_difference_of_identical_distributions_includes_zero() -> None:
    d = stats.difference(_clusters(0.0, 3), _clusters(0.0, 4), 50)
    assert d.low < 0 < d.high


def test_cluster_bootstrap_is_wider_than_the_chunk_count_suggests() -> None:
    # Each cluster (one comparison) has its own offset: 2,000 samples but only 20 independent ones.
    rng = random.Random(5)
    a = [
        [off + rng.gauss(0, 0.1) for _ in range(100)]
        for off in (rng.gauss(0, 5) for _ in range(20))
    ]
    b = [
        [off + rng.gauss(0, 0.1) for _ in range(100)]
        for off in (rng.gauss(0, 5) for _ in range(20))
    ]
    d = stats.difference(a, b, 50)
    assert d.high - d.low > 2.0


def test_quantile_is_nearest_rank_and_nan_when_empty() -> None:
    import numpy as np

    values = np.arange(1.0, 101.0)
    assert stats.quantile(values, 50) == 50.0
    assert stats.quantile(values, 99) == 99.0
    assert math.isnan(stats.quantile(np.empty(0), 50))


def test_ratio_of_differences_reports_how_many_times_larger_an_overhead_is() -> None:
    base, ours, theirs = _clusters(0.0, 6), _clusters(1.0, 7), _clusters(10.0, 8)
    r = stats.ratio_of_differences(theirs, ours, base)
    assert 5 < r.value < 20
    assert r.low < r.value < r.high


def test_estimates_without_data_are_nan_and_print_a_dash() -> None:
    d = stats.difference([], _clusters(0.0, 9), 50)
    assert math.isnan(d.value)
    assert d.fmt(" ms") == "—"
