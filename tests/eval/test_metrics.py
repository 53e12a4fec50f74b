"""The scoring protocol on cases worked by hand."""

import pytest

from medvqa.eval.metrics import (
    VQAScores,
    closed_substring,
    exact_match,
    normalize,
    open_recall,
    score_item,
    token_f1,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes.", "yes"),
        ("The left lung", "left lung"),
        ("Two nodules", "2 nodules"),
        ("isn't enlarged", "is not enlarged"),
        ("3.5 cm", "3.5 cm"),  # a decimal point survives
        ("1,000", "1000"),  # a number with commas loses them
        ("x-ray, PA view", "x ray pa view"),
        ("An MRI", "mri"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_substring_rule_counts_no_inside_normal_but_strict_match_does_not():
    assert closed_substring("normal", "no") == 1.0  # the protocol's known flaw
    assert exact_match("normal", "no") == 0.0
    assert closed_substring("No.", "no") == 1.0 and exact_match("No.", "no") == 1.0
    assert closed_substring("yes", "no") == 0.0


def test_open_recall_and_f1_by_hand():
    # truth {left, lung, base}, prediction {left, lung}: recall 2/3, precision 1, F1 = 2*(1*2/3)/(5/3) = 0.8
    assert open_recall("the left lung", "left lung base") == pytest.approx(2 / 3)
    assert token_f1("the left lung", "left lung base") == pytest.approx(0.8)
    # multisets: a repeated word counts once per occurrence in the truth
    assert open_recall("lung", "lung lung") == pytest.approx(0.5)
    assert open_recall("", "lung") == 0.0 and open_recall("lung", "") == 0.0
    assert token_f1("heart", "lung") == 0.0


def test_score_item_keys_follow_answer_type():
    assert set(score_item("yes", "yes", "closed")) == {"exact_match", "closed_acc", "closed_exact"}
    assert set(score_item("a b", "a", "open")) == {"exact_match", "open_recall", "token_f1"}


def test_torchmetric_aggregates_per_answer_type():
    m = VQAScores()
    m.update(["yes", "normal", "left lung"], ["yes", "no", "left lung base"], ["closed", "closed", "open"])
    m.update(["ct"], ["mri"], ["open"])
    out = {k: float(v) for k, v in m.compute().items()}
    assert out["closed_acc"] == pytest.approx(1.0)  # both closed count under the substring rule
    assert out["closed_exact"] == pytest.approx(0.5)
    assert out["open_recall"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["token_f1"] == pytest.approx((0.8 + 0) / 2)
    assert out["exact_match"] == pytest.approx(1 / 4)
    m.reset()
    assert float(m.compute()["closed_acc"]) == 0.0 and int(m.n_all) == 0
