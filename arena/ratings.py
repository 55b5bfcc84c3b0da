"""Bradley-Terry ratings with bootstrap intervals, from aggregated battle counts (numpy only).

Model: P(i beats j) = 1 / (1 + exp(θj - θi)). A tie counts as half a win for each side (the usual
reading of ties in Bradley-Terry fits, FastChat's included). The log-likelihood is maximised by
Newton's method with a very weak Gaussian prior (``PRIOR`` on θ, about one tenth of a virtual tie
per model) so a model that has never lost still gets a finite rating; with a handful of battles per
pair its pull on the estimate is negligible. The prior also pins the free constant: Σθ = 0.

Ratings are reported on the Elo-like scale Chatbot Arena uses: ``1000 + 400 · θ / ln 10`` (a
400-point gap = 10:1 odds).

Bootstrap: resampling N battles with replacement draws each (pair, outcome) category's count
from a multinomial; this draws each one from a Poisson with the observed count as its mean
instead (the Poisson bootstrap: the same distribution per category for large N, independent
draws, about a sixth of the time of numpy's multinomial), so every round costs O(categories),
not O(N). All rounds are fitted at once (batched Newton), each started from the point estimate,
which they are close to (two or three steps instead of eight or so). Percentile 95 % intervals,
fixed seed: the same votes always give the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

# numpy (~0.06-0.1 s of CPU to import) only where a fit runs: the API and its schemas import this
# module, and so does every ``manage.py`` command through Django's URL checks.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]

PRIOR = 0.05
SCALE = 400.0 / math.log(10.0)
BASE = 1000.0
ROUNDS = 200
SEED = 20261125
_ITERATIONS = 100
_TOLERANCE = 1e-9
#: Bootstrap rounds stop at a step of 1e-6 (0.0002 rating points; intervals are shown to 0.1).
_BOOT_TOLERANCE = 1e-6
_MAX_STEP = 2.0


@dataclass(frozen=True, slots=True)
class PairCount:
    """How often ``a`` beat ``b``, ``b`` beat ``a``, and how often they tied, over some battles."""

    a: str
    b: str
    a_wins: int
    b_wins: int
    ties: int


@dataclass(frozen=True, slots=True)
class ModelRating:
    model: str
    rating: float
    lower: float
    upper: float
    battles: int
    wins: int
    losses: int
    ties: int

    @property
    def win_rate(self) -> float:
        """Wins over battles (a tie is not a win)."""
        return self.wins / self.battles if self.battles else 0.0


def _fit(
    wins: Array,
    games: Array,
    i: npt.NDArray[np.intp],
    j: npt.NDArray[np.intp],
    k: int,
    start: Array | None = None,
    tolerance: float = _TOLERANCE,
) -> Array:
    """Batched penalised maximum likelihood: ``wins``/``games`` are ``(rounds, pairs)`` counts of
    pair p = (i[p], j[p]) (wins of i, ties as halves); returns θ of shape ``(rounds, k)``, from
    ``start`` (``(k,)``, default zeros)."""
    import numpy as np

    rounds = wins.shape[0]
    theta = np.zeros((rounds, k)) if start is None else np.repeat(start[None], rounds, axis=0)
    # Incidence of the pairs: +1 for i, -1 for j, so θ @ D.T is θi - θj for every pair.
    incidence = np.zeros((len(i), k))
    incidence[np.arange(len(i)), i] = 1.0
    incidence[np.arange(len(j)), j] = -1.0
    # Row p of ``outer`` is pair p's d_p d_pᵀ, flattened: weight @ outer is Σ_p w_p d_p d_pᵀ
    # for every round in one small matrix product.
    outer = (incidence[:, :, None] * incidence[:, None, :]).reshape(len(i), k * k)
    prior = PRIOR * np.eye(k)
    for _ in range(_ITERATIONS):
        diff = theta @ incidence.T
        p = 1.0 / (1.0 + np.exp(-diff))
        residual = wins - games * p  # d logL / d diff, per pair
        grad = residual @ incidence - PRIOR * theta
        weight = games * p * (1.0 - p)
        # Fisher information (= -Hessian): D.T diag(weight) D plus the prior.
        info = (weight @ outer).reshape(rounds, k, k) + prior
        step = np.linalg.solve(info, grad[..., None])[..., 0]
        # Damped: a full Newton step can overshoot when a model (nearly) never loses.
        size = np.max(np.abs(step), axis=1, keepdims=True)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(size, 1e-300))
        theta += step
        if float(np.max(np.abs(step))) < tolerance:
            break
    return theta


def ratings_fit(
    *, counts: Sequence[PairCount], rounds: int = ROUNDS, seed: int = SEED
) -> list[ModelRating]:
    """Ratings with bootstrap 95 % intervals, best first, from per-pair outcome counts."""
    import numpy as np

    _blas_limit()
    counts = [c for c in counts if c.a != c.b and c.a_wins + c.b_wins + c.ties > 0]
    models = sorted({c.a for c in counts} | {c.b for c in counts})
    if not models:
        return []
    index = {name: n for n, name in enumerate(models)}
    k = len(models)
    i = np.array([index[c.a] for c in counts], dtype=np.intp)
    j = np.array([index[c.b] for c in counts], dtype=np.intp)
    # Categories per pair: a won, b won, tie. Observed frequencies -> multinomial resampling.
    observed = np.array([[c.a_wins, c.b_wins, c.ties] for c in counts], dtype=np.float64)

    def as_wins(cat: Array) -> tuple[Array, Array]:
        a_wins, ties = cat[..., 0], cat[..., 2]
        return a_wins + 0.5 * ties, cat.sum(axis=-1)

    wins, games = as_wins(observed[None])
    theta = _fit(wins, games, i, j, k)[0]

    rng = np.random.default_rng(seed)
    if rounds > 0:
        drawn = rng.poisson(observed, size=(rounds, *observed.shape)).astype(np.float64)
        boot_wins, boot_games = as_wins(drawn)
        boot = _fit(boot_wins, boot_games, i, j, k, start=theta, tolerance=_BOOT_TOLERANCE)
        lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
    else:
        lower = upper = theta

    per_model = np.zeros((k, 3), dtype=np.int64)  # wins, losses, ties
    for c in counts:
        per_model[index[c.a]] += (c.a_wins, c.b_wins, c.ties)
        per_model[index[c.b]] += (c.b_wins, c.a_wins, c.ties)
    rated = [
        ModelRating(
            model=name,
            rating=BASE + SCALE * float(theta[n]),
            lower=BASE + SCALE * float(lower[n]),
            upper=BASE + SCALE * float(upper[n]),
            battles=int(per_model[n].sum()),
            wins=int(per_model[n, 0]),
            losses=int(per_model[n, 1]),
            ties=int(per_model[n, 2]),
        )
        for n, name in enumerate(models)
    ]
    return sorted(rated, key=lambda r: (-r.rating, r.model))


_blas_limited = False


def _blas_limit() -> None:
    """BLAS on one thread, once per process, before its first fit: the fit's matrices are tiny,
    and on a busy 2-core machine OpenBLAS's threads only contend with the server's (13 instead
    of 35 ms of CPU per fit). docs/benchmarks.md ("Leaderboard")."""
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _blas_limited = True


def ratings_prepare() -> None:
    """A serving process's warm-up for fits: a tiny fit, so the first real one does not pay for
    numpy's import and lazy set-up (~80 ms beyond the import)."""
    ratings_fit(counts=[PairCount("a", "b", 2, 1, 1), PairCount("b", "c", 1, 1, 0)], rounds=4)
