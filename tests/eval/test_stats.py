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


# -- clusters (issue 17 §2) ------------------------------------------------------------------------------


def test_singleton_clusters_give_the_question_level_interval():
    values = np.random.default_rng(2).random(200)
    plain = stats.bootstrap_ci(values, n_boot=500, seed=3)
    clustered = stats.bootstrap_ci(values, n_boot=500, seed=3, clusters=[f"q{i}" for i in range(200)])
    assert {k: clustered[k] for k in ("mean", "low", "high")} == pytest.approx(
        {k: plain[k] for k in ("mean", "low", "high")}
    )
    assert (plain["unit"], plain["n_clusters"], clustered["n_clusters"]) == ("question", 200, 200)


def test_cluster_replicates_are_the_ratio_estimator_over_resampled_clusters():
    """Two clusters of unequal size: A = [1, 1, 1] (3 items), B = [0] (1 item). Resampling 2 clusters gives
    AA = 6/6, AB = BA = 3/4, BB = 0/2, each replicate sum(scores) / count(items), never a mean of means."""
    codes = stats._codes(["A", "A", "A", "B"], 4)
    means = stats._resampled_means(np.array([1.0, 1, 1, 0]), codes, 4000, seed=0)
    assert set(np.round(means, 6)) == {1.0, 0.75, 0.0}
    assert np.mean(means == 0.75) == pytest.approx(0.5, abs=0.03)


def test_clustered_interval_is_wider_when_clusters_are_all_right_or_all_wrong():
    """20 clusters x 10 items, each cluster all 1 or all 0: resampling clusters sees 20 observations."""
    values = np.repeat([1.0, 0.0] * 10, 10)
    clusters = np.repeat(np.arange(20), 10)
    by_question = stats.bootstrap_ci(values, seed=0)
    by_cluster = stats.bootstrap_ci(values, seed=0, clusters=clusters, unit="patient")
    assert by_cluster["high"] - by_cluster["low"] > 2.5 * (by_question["high"] - by_question["low"])
    assert (by_cluster["unit"], by_cluster["n_clusters"], by_cluster["n"]) == ("patient", 20, 200)
    with pytest.raises(ValueError, match="one cluster id per item"):
        stats.bootstrap_ci(values, clusters=clusters[:5])


def test_row_clusters_take_the_patient_else_the_image():
    rows = [{"id": "1", "image": "a.png", "patient_id": "p1"}, {"id": "2", "image": "b.png"},
            {"id": "3", "image": "x.parquet", "image_row": 4}, {"id": "4", "image": "z.zip", "image_id": "img9"}]  # fmt: skip
    assert stats.row_clusters(rows, "patient") == (["patient:p1", "b.png", "x.parquet#4", "img9"], "patient")
    assert stats.row_clusters(rows[1:], "patient")[1] == "image"  # no patient ids: the image, said so
    assert stats.row_clusters(rows, "image")[0] == ["a.png", "b.png", "x.parquet#4", "img9"]
    assert stats.row_clusters(rows, "question") == (None, "question")
    with pytest.raises(ValueError, match="eval.ci_unit=visit"):
        stats.row_clusters(rows, "visit")


def test_cluster_permutation_p_sees_clusters():
    """B beats A on 3 of 20 clusters (10 items each) and ties elsewhere: 30 discordant items are strong
    evidence for McNemar (p ~ 1e-9) but 3 clusters can only give p >= 2 / 2**3 = 0.25 under sign flips."""
    a = np.zeros(200)
    b = a.copy()
    b[:30] = 1
    clusters = np.repeat(np.arange(20), 10)
    assert stats.mcnemar_exact(a, b)["p_value"] < 1e-8
    p = stats.cluster_permutation_p(a, b, clusters, n_perm=4000, seed=0)
    assert 0.2 < p < 0.3
    assert stats.cluster_permutation_p(a, b, None, n_perm=4000, seed=0) < 0.001  # singletons: 30 flips
    assert stats.cluster_permutation_p(a, a, clusters) == 1.0


def test_holm_against_hand_worked_numbers():
    """m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone: max(0.06, 0.06)), 0.5."""
    assert stats.holm([0.03, None, 0.01, 0.5, 0.02]) == pytest.approx([0.06, None, 0.04, 0.5, 0.06])
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]
    assert stats.holm([]) == []


@pytest.mark.slow
def test_cluster_bootstrap_covers_where_the_question_bootstrap_does_not():
    """SLAKE-like clustering (50 images x 22 questions, image accuracy logit-normal(1, 1.5)): over 200
    simulated test sets the per-question interval holds the true accuracy far less often than 95%, the
    per-image one close to it (percentile intervals on 50 clusters run a little short)."""
    rng = np.random.default_rng(0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    truth = sig(1.0 + 1.5 * rng.standard_normal(1_000_000)).mean()
    clusters = np.repeat(np.arange(50), 22)
    hits = {"question": 0, "image": 0}
    for r in range(200):
        p = sig(1.0 + 1.5 * rng.standard_normal(50))
        y = (rng.random((50, 22)) < p[:, None]).astype(float).ravel()
        for unit, cl in (("question", None), ("image", clusters)):
            ci = stats.bootstrap_ci(y, n_boot=1000, seed=r, clusters=cl)
            hits[unit] += ci["low"] <= truth <= ci["high"]
    assert hits["question"] / 200 < 0.7 and hits["image"] / 200 > 0.85
