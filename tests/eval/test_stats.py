"""Bootstrap intervals and the exact McNemar test, against hand-worked numbers and the normal approximation."""

import math

import numpy as np
import pytest

from medvqa.eval import stats


def binary(n_ones: int, n: int, seed: int = 0) -> np.ndarray:
    values = np.zeros(n)
    values[:n_ones] = 1
    return np.random.default_rng(seed).permutation(values)


def test_bootstrap_covers_the_point_estimate_and_matches_normal_width():
    """960 closed questions at ~0.94 accuracy (the default run's test split): the percentile interval
    holds the mean and is within 20% of the normal-approximation width 2 * 1.96 * sqrt(p(1-p)/n)."""
    values = binary(902, 960)
    ci = stats.bootstrap_ci(values, n_boot=2000, seed=0)
    p = 902 / 960
    assert ci["mean"] == pytest.approx(p)
    assert ci["low"] < ci["mean"] < ci["high"]
    normal = 2 * 1.96 * math.sqrt(p * (1 - p) / 960)
    assert abs((ci["high"] - ci["low"]) - normal) / normal < 0.2
    assert (ci["n"], ci["n_boot"], ci["seed"], ci["confidence"]) == (960, 2000, 0, 0.95)


def test_bootstrap_is_deterministic_and_seeded():
    values = np.random.default_rng(3).random(500)
    assert stats.bootstrap_ci(values, seed=7) == stats.bootstrap_ci(list(values), seed=7)
    assert stats.bootstrap_ci(values, seed=7) != stats.bootstrap_ci(values, seed=8)


def test_bootstrap_chunking_does_not_change_numbers(monkeypatch):
    """Many items are resampled in chunks; the chunk size depends on n only, and the stream is the same."""
    values = np.random.default_rng(1).random(300)
    whole = stats.bootstrap_ci(values, n_boot=400, seed=5)
    monkeypatch.setattr(stats, "_CELLS_PER_CHUNK", 300 * 7)  # 7 replicates per chunk
    assert stats.bootstrap_ci(values, n_boot=400, seed=5) == pytest.approx(whole)


def test_bootstrap_edge_cases():
    one = stats.bootstrap_ci([0.25])
    assert (one["low"], one["mean"], one["high"]) == (0.25, 0.25, 0.25)
    constant = stats.bootstrap_ci([1.0] * 50)
    assert (constant["low"], constant["high"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        stats.bootstrap_ci([0.1, float("nan")])


def test_paired_bootstrap_difference():
    a = binary(800, 960, seed=1)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:60]] = 1  # B fixes 60 of A's errors and breaks none
    ci = stats.paired_bootstrap_ci(a, b, seed=0)
    assert ci["mean"] == pytest.approx(60 / 960)
    assert 0 < ci["low"] < ci["mean"] < ci["high"] and ci["excludes_zero"]
    same = stats.paired_bootstrap_ci(a, a)
    assert (same["low"], same["mean"], same["high"], same["excludes_zero"]) == (0.0, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="align"):
        stats.paired_bootstrap_ci([1, 0], [1])


def test_paired_interval_is_narrower_than_unpaired_when_runs_agree():
    """Pairing removes the between-item variance: two highly correlated runs differ with a tight interval."""
    rng = np.random.default_rng(0)
    a = rng.random(960)
    b = a + rng.normal(0.01, 0.01, 960)
    paired = stats.paired_bootstrap_ci(a, b)
    ca, cb = stats.bootstrap_ci(a), stats.bootstrap_ci(b)
    assert paired["high"] - paired["low"] < 0.2 * (ca["high"] - ca["low"] + cb["high"] - cb["low"])


def test_align_pairs_shared_ids():
    ids, a, b = stats.align({"q1": 1.0, "q2": 0.0, "q3": 1.0}, {"q3": 0.0, "q1": 1.0, "q9": 1.0})
    assert (ids, a, b) == (["q1", "q3"], [1.0, 1.0], [1.0, 0.0])


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 0.021484375),  # 2 * (C(10,0) + C(10,1)) / 2**10 = 22 / 1024
        (9, 1, 0.021484375),
        (0, 0, 1.0),
        (5, 5, 1.0),
        (0, 5, 0.0625),  # 2 / 32
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
    ],
)
def test_mcnemar_hand_worked(b, c, p):
    a_right = [True] * b + [False] * c + [True] * 7 + [False] * 3
    b_right = [False] * b + [True] * c + [True] * 7 + [False] * 3
    out = stats.mcnemar_exact(a_right, b_right)
    assert (out["b"], out["c"], out["n"]) == (b, c, b + c + 10)
    assert out["p_value"] == p


def test_binomial_matches_scipy():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for k, n in [(0, 1), (3, 20), (40, 100), (123, 300), (50, 100)]:
        assert stats.binomial_two_sided(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-12)


def test_mcnemar_shape_mismatch():
    with pytest.raises(ValueError, match="align"):
        stats.mcnemar_exact([True, False], [True])
