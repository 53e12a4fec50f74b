"""The shared scoring path's pure parts: values from rows, intervals, Java. (The protocols: test_protocols*.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from medvqa.eval.evaluation import check_text_metrics, intervals, metrics_from_rows
from medvqa.eval.metrics import VQAScores, score_item

ITEMS = [("yes", "yes", "closed"), ("no, it is normal", "no", "closed"), ("yes or no", "yes", "closed"),
         ("normal", "no", "closed"), ("left lung mass", "mass in the left lung", "open"), ("ct", "mri", "open"),
         ("Yes. Also no.", "yes", "closed")]  # fmt: skip


def _rows():
    return [{"id": str(i), "prediction": p, "answer": t, "answer_type": k, "scores": score_item(p, t, k)}
            for i, (p, t, k) in enumerate(ITEMS)]  # fmt: skip


def test_values_from_rows_equal_the_stage_metric_bit_for_bit():
    scores = VQAScores()
    scores.update(*zip(*ITEMS, strict=True))
    logged = {f"test/{k}": float(v) for k, v in scores.compute().items()}
    assert metrics_from_rows(_rows(), "test") == logged


def test_intervals_cover_the_mean_of_each_score_and_are_seeded():
    rng = np.random.default_rng(0)
    rows = [{"scores": {"closed_acc": float(v)}} for v in rng.integers(0, 2, 300)]
    ci = intervals(rows, n_boot=500, seed=3)["closed_acc"]
    assert ci["low"] <= np.mean([r["scores"]["closed_acc"] for r in rows]) <= ci["high"] and ci["n"] == 300
    assert intervals(rows, n_boot=500, seed=3)["closed_acc"] == ci


def test_text_metric_names_are_checked():
    with pytest.raises(ValueError, match=r"eval.text_metrics=\['bleurt'\]: unknown"):
        check_text_metrics(["bleurt"])
    check_text_metrics([])
    check_text_metrics(["bertscore"])  # needs no Java
