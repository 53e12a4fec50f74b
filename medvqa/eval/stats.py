"""Uncertainty and comparisons for per-item scores: bootstrap intervals and an exact McNemar test.

All functions are pure and deterministic: the same inputs and `seed` give the same numbers on any machine
(numpy's `Generator(PCG64(seed))`, resampled in chunks whose size depends only on the number of items).

- `bootstrap_ci`: percentile bootstrap 95% interval of a mean of per-item scores (any metric that is a
  mean over items: the protocol's accuracies, ROUGE-L, BERTScore, ... not corpus BLEU or METEOR).
- `paired_bootstrap_ci`: the same for the mean difference of two runs scored on the same items, resampling
  items jointly (Koehn 2004; the paired design removes between-item variance).
- `mcnemar_exact`: exact two-sided McNemar test for two runs' right/wrong on shared closed questions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
_CELLS_PER_CHUNK = 4_000_000  # resampled indices held at once (32 MB of int64)


def _resampled_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of `values` resampled with replacement; vectorised, chunked to bound memory."""
    rng = np.random.default_rng(seed)
    n = len(values)
    chunk = max(1, _CELLS_PER_CHUNK // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _as_values(scores: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(
            f"{what}: need a non-empty 1-D sequence of per-item scores, got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: {int((~np.isfinite(values)).sum())} scores are NaN or infinite")
    return values


def _interval(estimate: float, means: np.ndarray, n: int, n_boot: int, seed: int, confidence: float):
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(estimate), "low": float(low), "high": float(high), "n": n, "n_boot": n_boot,
            "seed": seed, "confidence": confidence}  # fmt: skip


def bootstrap_ci(
    scores: Sequence[float] | np.ndarray, n_boot: int = N_BOOT, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Percentile bootstrap interval for the mean of `scores` (shape (n,), one score per item).

    Returns {"mean", "low", "high", "n", "n_boot", "seed", "confidence"}; `mean` is the plain mean of
    `scores` (the point estimate), `low`/`high` the (1-confidence)/2 and (1+confidence)/2 percentiles of
    `n_boot` resampled means. With a single item the interval is that item's score.
    """
    values = _as_values(scores, "bootstrap_ci")
    means = _resampled_means(values, n_boot, seed)
    return _interval(values.mean(), means, len(values), n_boot, seed, confidence)


def paired_bootstrap_ci(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Interval for mean(b - a) over items scored by both runs; `scores_a[i]` and `scores_b[i]` are the
    same item (use `align` to pair them by id). Same keys as `bootstrap_ci` (`mean` is the difference),
    plus "excludes_zero": the difference is significant at the interval's level."""
    a, b = _as_values(scores_a, "paired_bootstrap_ci a"), _as_values(scores_b, "paired_bootstrap_ci b")
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci: {len(a)} and {len(b)} scores; pair them with align() first")
    out = bootstrap_ci(b - a, n_boot=n_boot, seed=seed, confidence=confidence)
    return out | {"excludes_zero": bool(out["low"] > 0 or out["high"] < 0)}


def align(scores_a: Mapping[str, float], scores_b: Mapping[str, float]) -> tuple[list[str], list, list]:
    """(shared ids in A's order, A's scores, B's scores) for the items both runs scored."""
    shared = [key for key in scores_a if key in scores_b]
    return shared, [scores_a[k] for k in shared], [scores_b[k] for k in shared]


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair trials: min(1, 2 P(X <= min(k, n-k))), computed in
    integers (exact; scipy.stats.binomtest(k, n, 0.5).pvalue gives the same, but scipy is not a dependency)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test: do runs A and B differ in accuracy on the same items (`correct_a[i]`,
    `correct_b[i]` for item i; 1/0 or bool)? Only discordant items count: b = A right & B wrong,
    c = A wrong & B right; p = two-sided binomial(b, b + c, 1/2). Returns {"n", "b", "c", "p_value"}."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(f"mcnemar_exact: {a.shape} and {bb.shape}; pair the items with align() first")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    return {"n": len(a), "b": b, "c": c, "p_value": binomial_two_sided(b, b + c)}
