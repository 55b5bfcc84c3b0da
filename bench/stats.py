"""Statistics for the interleaved comparison (``bench/suite.py``): percentiles with their sample
counts, and bootstrap 95 % intervals of differences and ratios.

Samples are grouped in *clusters* (one comparison: its streams' chunks are not independent of
each other), and the bootstrap resamples clusters, not single chunks, so an interval is not made
narrower by the thousands of correlated chunks of one stream. Seeded: the same data gives the same
interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Bootstrap resamples per interval.
RESAMPLES = 1000
Clusters = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap 95 % interval (NaN when it could not be estimated)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def fmt(self, unit: str = "", digits: int = 2) -> str:
        if math.isnan(self.value):
            return "—"
        body = f"{self.value:.{digits}f}"
        if not math.isnan(self.low):
            body += f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return body + unit


def flat(clusters: Clusters) -> np.ndarray:
    arrays = [np.asarray(c, dtype=float) for c in clusters if len(c)]
    return np.concatenate(arrays) if arrays else np.empty(0)


def quantile(values: np.ndarray, q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as ``bench.common.pct``."""
    if values.size == 0:
        return math.nan
    rank = min(max(1, math.ceil(q / 100 * values.size)), values.size) - 1
    # A partial sort: the bootstrap calls this thousands of times on tens of thousands of values.
    return float(np.partition(values, rank)[rank])


class _Sample:
    """Clusters flattened and sorted once; a bootstrap resample is a weight per cluster (how many
    times it was drawn), so a resampled percentile is a cumulative sum and a search, with no
    concatenation or sort per resample."""

    def __init__(self, clusters: Clusters) -> None:
        arrays = [np.asarray(c, dtype=float) for c in clusters if len(c)]
        self.k = len(arrays)
        if not arrays:
            self.values = np.empty(0)
            self.ids = np.empty(0, dtype=int)
            return
        values = np.concatenate(arrays)
        ids = np.concatenate([np.full(a.size, i) for i, a in enumerate(arrays)])
        order = np.argsort(values, kind="stable")
        self.values, self.ids = values[order], ids[order]

    def __bool__(self) -> bool:
        return self.k > 0

    def quantile(self, q: float, counts: np.ndarray | None = None) -> float:
        if counts is None:
            return quantile(self.values, q)
        cumulative = np.cumsum(counts[self.ids])
        total = int(cumulative[-1])
        if total == 0:
            return math.nan
        rank = min(max(1, math.ceil(q / 100 * total)), total)
        return float(self.values[np.searchsorted(cumulative, rank)])

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return np.bincount(rng.integers(0, self.k, self.k), minlength=self.k)


def difference(a: Clusters, b: Clusters, q: float, seed: int = 1) -> Estimate:
    """Percentile ``q`` of ``a`` minus that of ``b``, with a cluster-bootstrap 95 % interval."""
    sa, sb = _Sample(a), _Sample(b)
    if not sa or not sb:
        return Estimate(math.nan)
    value = sa.quantile(q) - sb.quantile(q)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [sa.quantile(q, sa.draw(rng)) - sb.quantile(q, sb.draw(rng)) for _ in range(RESAMPLES)]
    )
    return Estimate(value, *_interval(draws))


def ratio_of_differences(
    a: Clusters, b: Clusters, base: Clusters, q: float = 50, seed: int = 1
) -> Estimate:
    """(q(a) - q(base)) / (q(b) - q(base)): how many times ``a``'s overhead is ``b``'s."""
    samples = [_Sample(a), _Sample(b), _Sample(base)]
    if not all(samples):
        return Estimate(math.nan)

    def stat(x: float, y: float, z: float) -> float:
        below = y - z
        return (x - z) / below if below > 0 else math.inf

    value = stat(*(s.quantile(q) for s in samples))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [stat(*(s.quantile(q, s.draw(rng)) for s in samples)) for _ in range(RESAMPLES)]
    )
    return Estimate(value, *_interval(draws))


def _interval(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[~np.isnan(draws)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def ratio_of_medians(a: Sequence[float], b: Sequence[float], seed: int = 1) -> Estimate:
    """median(a) / median(b) over per-repetition values, bootstrap over repetitions."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return Estimate(math.nan)
    value = float(np.median(x) / np.median(y))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            np.median(rng.choice(x, x.size)) / np.median(rng.choice(y, y.size))
            for _ in range(RESAMPLES)
        ]
    )
    return Estimate(value, *_interval(draws))


def median_ci(values: Sequence[float], seed: int = 1) -> Estimate:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Estimate(math.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([np.median(rng.choice(x, x.size)) for _ in range(RESAMPLES)])
    return Estimate(float(np.median(x)), *_interval(draws))
