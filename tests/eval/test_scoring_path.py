"""The shared scoring path's pure parts: values from rows, the LLaVA-Med closed rule, intervals, Java."""

from __future__ import annotations

import numpy as np
import pytest

from medvqa.eval.evaluation import apply_protocol, check_text_metrics, intervals, metrics_from_rows
from medvqa.eval.llava_med import closed_hit
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


@pytest.mark.parametrize(("text", "truth", "hit"), [
    ("yes", "yes", 1.0), ("No.", "no", 1.0), ("yes or no", "yes", 1.0), ("yes or no", "no", 1.0),
    ("normal", "no", 1.0),  # "no" is a substring of "normal": their rule counts it
    ("absent", "no", 0.0),  # neither "yes" nor "no" in the text
    ("yes", "no", 0.0), ("The answer is: yes", "yes", 1.0),
])  # fmt: skip
def test_llava_med_closed_rule(text, truth, hit):
    assert closed_hit(text, truth) == hit


def test_llava_med_protocol_rescores_closed_rows_only_and_medvqa_changes_nothing():
    rows, metrics = _rows(), metrics_from_rows(_rows(), "test")
    before = dict(metrics)
    apply_protocol(rows, metrics, "test", "medvqa")
    assert metrics == before
    apply_protocol(rows, metrics, "test", "llava_med")
    closed = [r for r in rows if r["answer_type"] == "closed"]
    assert [r["scores"]["closed_acc"] for r in closed] == [
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    ]  # hedges count under theirs
    assert metrics["test/closed_acc"] == 1.0 and metrics["test/closed_exact"] == before["test/closed_exact"]
    with pytest.raises(ValueError, match="eval.protocol=vqa"):
        apply_protocol(rows, metrics, "test", "vqa")


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
