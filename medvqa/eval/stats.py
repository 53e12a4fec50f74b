"""Uncertainty and comparisons for per-item scores: cluster bootstrap intervals, a cluster permutation test,
an exact McNemar test and Holm's correction.

All functions are pure and deterministic: the same inputs and `seed` give the same numbers on any machine
(numpy's `Generator(PCG64(seed))`, resampled in chunks whose size depends only on the number of clusters).

Questions cluster: VQA-RAD asks ~11 questions per image, SLAKE ~22, and a model that misreads a picture
gets several of them wrong together. Resampling single questions then treats 10 correlated answers as 10
independent ones and the interval is too narrow. So every function takes `clusters` (one id per item:
the patient, else the image; `row_clusters` reads them off prediction rows) and resamples whole clusters;
`clusters=None` is the question-level bootstrap (every item its own cluster).

- `bootstrap_ci`: percentile bootstrap 95% interval of a mean of per-item scores (any metric that is a
  mean over items: the protocol's accuracies, ROUGE-L, BERTScore, ... not corpus BLEU or METEOR). Clusters
  differ in size, so a replicate's estimate is the ratio estimator sum(scores) / count(items) over the
  resampled clusters, the same mean-over-questions the point estimate is.
- `paired_bootstrap_ci`: the same for the mean difference of two runs scored on the same items, resampling
  clusters jointly (Koehn 2004; the paired design removes between-item variance).
- `cluster_permutation_p`: two-sided sign-flip permutation p-value of that difference, flipping whole
  clusters (under "no difference" the two runs' labels are exchangeable within a cluster).
- `mcnemar_exact`: exact two-sided McNemar test for two runs' right/wrong on shared closed questions; it
  assumes independent questions, which clustered releases break (reported beside the cluster test).
- `holm`: Holm's step-down adjustment of a family of p-values (tables that star many metrics x runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
N_PERM = 10000
CONFIDENCE = 0.95
CI_UNITS = ("patient", "image", "question")
_CELLS_PER_CHUNK = 4_000_000  # resampled indices held at once (32 MB of int64)


def image_key(row: Mapping[str, Any], index: int = 0) -> str:
    """A prediction row's picture, spelled as VQASample.image_key spells it (its id, else where its bytes
    are); a row that names no image is a cluster of its own (its id, else its `index`)."""
    if row.get("image_id"):
        return str(row["image_id"])
    if not row.get("image"):
        return f"question:{row.get('id', index)}"
    return (str(row["image"]) + (f"#{row['image_row']}" if row.get("image_row") is not None else "")
            + (f"::{row['image_member']}" if row.get("image_member") else ""))  # fmt: skip


def check_unit(unit: str) -> None:
    """Refuse an unknown eval.ci_unit before any model loads (and not after hours of training)."""
    if unit not in CI_UNITS:
        raise ValueError(f"eval.ci_unit={unit}: choose one of {list(CI_UNITS)}")


def row_clusters(rows: Sequence[Mapping[str, Any]], unit: str) -> tuple[list[str] | None, str]:
    """(one cluster id per row, the unit actually used) for `eval.ci_unit=unit`: `patient` takes the row's
    `patient_id` and falls back to its image where the release names no patient (the unit is then
    reported as `image` when no row has one); `image` the picture; `question` None (no clustering, also
    when the rows name neither patient nor image)."""
    check_unit(unit)
    if unit == "question":
        return None, unit
    if unit == "patient" and any(r.get("patient_id") for r in rows):
        ids = [
            f"patient:{r['patient_id']}" if r.get("patient_id") else image_key(r, i)
            for i, r in enumerate(rows)
        ]
        return ids, unit
    if not any(r.get("image") or r.get("image_id") for r in rows):  # rows that name no picture at all
        return None, "question"
    return [image_key(r, i) for i, r in enumerate(rows)], "image"


def _codes(clusters: Sequence[Any] | None, n: int) -> np.ndarray:
    """Cluster index 0..G-1 of each item, in order of first appearance; None: item i is cluster i."""
    if clusters is None:
        return np.arange(n)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} scores; give one cluster id per item")
    seen: dict[Any, int] = {}
    return np.array([seen.setdefault(c, len(seen)) for c in clusters], dtype=np.int64)


def _resampled_means(values: np.ndarray, codes: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) ratio estimates sum(values) / count over clusters resampled with replacement;
    vectorised over replicates, chunked to bound memory."""
    rng = np.random.default_rng(seed)
    sums = np.bincount(codes, weights=values)
    counts = np.bincount(codes).astype(np.float64)
    g = len(sums)
    chunk = max(1, _CELLS_PER_CHUNK // g)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, g, size=(stop - start, g))
        means[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return means


def joint_bootstrap(
    columns: Sequence[Sequence[float] | np.ndarray], clusters: Sequence[Any] | None, n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot, k) ratio estimates of k score columns over the same items (shape (n,) each), every
    replicate resampling the same clusters for all k: for statistics of several conditions of one item
    set (visual reliance's real minus the best image-free condition)."""
    values = [_as_values(c, "joint_bootstrap") for c in columns]
    codes = _codes(clusters, len(values[0]))
    rng = np.random.default_rng(seed)
    sums = np.stack([np.bincount(codes, weights=v) for v in values])  # (k, G)
    counts = np.bincount(codes).astype(np.float64)
    g = len(counts)
    chunk = max(1, _CELLS_PER_CHUNK // g)
    out = np.empty((n_boot, len(values)))
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, g, size=(stop - start, g))
        out[start:stop] = (sums[:, idx].sum(axis=2) / counts[idx].sum(axis=1)).T
    return out


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
    scores: Sequence[float] | np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    clusters: Sequence[Any] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap interval for the mean of `scores` (shape (n,), one score per item), resampling
    the clusters `clusters` (shape (n,), any hashable ids; None: every item its own cluster).

    Returns {"mean", "low", "high", "n", "n_boot", "seed", "confidence", "unit", "n_clusters"}; `mean` is
    the plain mean of `scores` (the point estimate), `low`/`high` the (1-confidence)/2 and (1+confidence)/2
    percentiles of `n_boot` resampled ratio estimates; `unit` names what was resampled (default
    "question" without clusters, "cluster" with). With a single cluster the interval is its mean.
    """
    values = _as_values(scores, "bootstrap_ci")
    codes = _codes(clusters, len(values))
    means = _resampled_means(values, codes, n_boot, seed)
    out = _interval(values.mean(), means, len(values), n_boot, seed, confidence)
    unit = unit or ("question" if clusters is None else "cluster")
    return out | {"unit": unit, "n_clusters": int(codes.max()) + 1}


def paired_bootstrap_ci(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    clusters: Sequence[Any] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Interval for mean(b - a) over items scored by both runs; `scores_a[i]` and `scores_b[i]` are the
    same item (use `align` to pair them by id) in cluster `clusters[i]`. Same keys as `bootstrap_ci`
    (`mean` is the difference), plus "excludes_zero": the difference is significant at the interval's level."""
    a, b = _as_values(scores_a, "paired_bootstrap_ci a"), _as_values(scores_b, "paired_bootstrap_ci b")
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci: {len(a)} and {len(b)} scores; pair them with align() first")
    out = bootstrap_ci(b - a, n_boot=n_boot, seed=seed, confidence=confidence, clusters=clusters, unit=unit)
    return out | {"excludes_zero": bool(out["low"] > 0 or out["high"] < 0)}


def cluster_permutation_p(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | None = None,
    n_perm: int = N_PERM,
    seed: int = 0,
) -> float:
    """Two-sided p-value of mean(b - a) != 0 by sign-flip permutation of whole clusters: each cluster's
    summed difference D_g keeps or flips its sign at random (n_perm draws); p = (1 + #{|sum s_g D_g| >=
    |sum D_g|}) / (1 + n_perm), never 0. Exact enumeration is not needed: the +1 keeps it valid."""
    a, b = _as_values(scores_a, "cluster_permutation_p a"), _as_values(scores_b, "cluster_permutation_p b")
    if a.shape != b.shape:
        raise ValueError(f"cluster_permutation_p: {len(a)} and {len(b)} scores; pair them with align()")
    d = np.bincount(_codes(clusters, len(a)), weights=b - a)
    observed = abs(d.sum())
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // len(d))
    hits = 0
    for start in range(0, n_perm, chunk):
        signs = rng.integers(0, 2, size=(min(chunk, n_perm - start), len(d))) * 2 - 1
        # a tolerance so that ties (the observed arrangement itself, all-zero differences) count as hits
        hits += int((np.abs(signs @ d) >= observed - 1e-12).sum())
    return (1 + hits) / (1 + n_perm)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error control over the non-None entries, in their
    order): the k-th smallest of m becomes max over j <= k of min(1, (m - j + 1) p_(j)). None stays None."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(present)
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


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
    c = A wrong & B right; p = two-sided binomial(b, b + c, 1/2). Assumes the items are independent
    (clustered questions break this: see cluster_permutation_p). Returns {"n", "b", "c", "p_value"}."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(f"mcnemar_exact: {a.shape} and {bb.shape}; pair the items with align() first")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    return {"n": len(a), "b": b, "c": c, "p_value": binomial_two_sided(b, b + c)}
