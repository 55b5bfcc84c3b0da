"""Statistics for the interleaved comparison (``bench/suite.py``): percentiles with their sample
counts, and bootstrap 95 % intervals of differences and ratios.

Samples are grouped in *clusters* (one comparison: its streams' chunks are not independent of
each other), and the bootstrap resamples clusters, not single chunks, so an interval is not made
narrower by the thousands of correlated chunks of one stream. Seeded: the same data gives the same
interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    ordered = np.sort(values)
    rank = max(1, math.ceil(q / 100 * ordered.size))
    return float(ordered[min(rank, ordered.size) - 1])


def _resample(clusters: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(clusters), len(clusters))
    return np.concatenate([clusters[i] for i in picks])


def _prepare(clusters: Clusters) -> list[np.ndarray]:
    return [np.asarray(c, dtype=float) for c in clusters if len(c)]


def difference(a: Clusters, b: Clusters, q: float, seed: int = 1) -> Estimate:
    """Percentile ``q`` of ``a`` minus that of ``b``, with a cluster-bootstrap 95 % interval."""
    return _joint(a, b, lambda x, y: quantile(x, q) - quantile(y, q), seed)


def ratio_of_differences(
    a: Clusters, b: Clusters, base: Clusters, q: float = 50, seed: int = 1
) -> Estimate:
    """(q(a) - q(base)) / (q(b) - q(base)): how many times ``a``'s overhead is ``b``'s."""
    prepared = [_prepare(a), _prepare(b), _prepare(base)]
    if not all(prepared):
        return Estimate(math.nan)

    def stat(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
        below = quantile(y, q) - quantile(z, q)
        return (quantile(x, q) - quantile(z, q)) / below if below > 0 else math.inf

    value = stat(*(np.concatenate(p) for p in prepared))
    rng = np.random.default_rng(seed)
    draws = np.array([stat(*(_resample(p, rng) for p in prepared)) for _ in range(RESAMPLES)])
    return Estimate(value, *_interval(draws))


def _interval(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[~np.isnan(draws)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _joint(
    a: Clusters, b: Clusters, stat: Callable[[np.ndarray, np.ndarray], float], seed: int
) -> Estimate:
    pa, pb = _prepare(a), _prepare(b)
    if not pa or not pb:
        return Estimate(math.nan)
    value = stat(np.concatenate(pa), np.concatenate(pb))
    rng = np.random.default_rng(seed)
    draws = np.array([stat(_resample(pa, rng), _resample(pb, rng)) for _ in range(RESAMPLES)])
    return Estimate(value, *_interval(draws))


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
