"""calibrate() against thresholds worked out by hand from exact (Clopper-Pearson) lower bounds of the\nprecision, and the per-kind calibration."""

from __future__ import annotations

import math

import pytest

from medvqa.guard.abstain import calibrate, calibrate_kinds, is_correct, score_of
from tests.guard.fakes import FakeAnswer

# ten right answers at 0.99 .. 0.90, then a wrong one at 0.5 and a right one at 0.4
CONF = [0.99 - 0.01 * i for i in range(10)] + [0.5, 0.4]
RIGHT = [True] * 10 + [False, True]


@pytest.mark.parametrize(
    ("target", "threshold"),
    [
        # one-sided 95% Clopper-Pearson lower bounds of the top-k precision: 10/10 0.7411, 10/11 0.6356,
        # 11/12 0.6613 (scipy.stats.beta.ppf(0.05, k, n - k + 1)); observed, the top ten are 1.0
        (0.74, 0.90),  # only the top ten are shown to reach it
        (0.70, 0.90),
        (0.65, 0.4),  # 10/11 falls short, 11/12 reaches it: the lowest such threshold answers everything
        (0.75, math.inf),  # ten right answers in a row do not show a precision of 0.75
        (0.95, math.inf),  # (that takes 59)
    ],
)
def test_calibrate_on_the_lower_bound_of_the_precision(target, threshold):
    assert calibrate(CONF, RIGHT, target) == pytest.approx(threshold)


def test_calibrate_order_of_input_does_not_matter():
    assert calibrate(CONF[::-1], RIGHT[::-1], 0.65) == 0.4


def test_the_target_needs_the_bound_not_the_observed_precision():
    assert calibrate([0.9] * 58, [True] * 58, 0.95) == math.inf  # 0.05 ** (1 / 58) = 0.9497
    assert calibrate([0.9] * 59, [True] * 59, 0.95) == 0.9  # 0.05 ** (1 / 59) = 0.9505


def test_ties_are_cut_together():
    # 0.9 twice, one right one wrong: the pair's bound is 0.025, all three (2/3) 0.135
    assert calibrate([0.9, 0.9, 0.5], [True, False, True], 0.1) == 0.5
    assert calibrate([0.9, 0.9, 0.5], [True, False, True], 0.2) == math.inf
    assert calibrate([0.9, 0.9, 0.5], [True, True, False], 0.2) == 0.9  # 2/2: 0.2236


def test_nothing_reaches_the_target_or_nothing_to_calibrate_on():
    assert calibrate([0.9, 0.2], [False, False], 0.95) == math.inf
    assert calibrate([], [], 0.95) == math.inf


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="guard.target_precision=0"):
        calibrate([0.5], [True], 0.0)
    with pytest.raises(ValueError, match="2 confidences but 1"):
        calibrate([0.5, 0.6], [True], 0.9)


def test_score_of_uses_probability_for_closed_and_logprob_for_open():
    assert score_of(FakeAnswer("yes", "closed", confidence=0.7, mean_logprob=-0.1)) == 0.7
    assert score_of(FakeAnswer("ct", "open", confidence=None, mean_logprob=-0.4)) == -0.4
    assert score_of(FakeAnswer("yes", "closed", confidence=None)) is None
    assert score_of(FakeAnswer("yes", "closed", confidence=float("nan"))) is None


def test_correctness_follows_the_scoring_protocol():
    assert is_correct("Yes.", "yes", "closed") and not is_correct("no", "yes", "closed")
    assert not is_correct("yes or no", "yes", "closed")  # a hedge is wrong
    assert is_correct("the left side", "left", "open") and not is_correct("right", "left", "open")


def test_calibrate_kinds_keeps_scales_apart():
    answers = [FakeAnswer("yes", "closed", confidence=c) for c in (0.99, 0.9, 0.6)]
    answers += [
        FakeAnswer(a, "open", mean_logprob=lp) for a, lp in (("ct", -0.05), ("mri", -0.3), ("ct", -2.0))
    ]
    truths = ["yes", "yes", "no", "ct", "ct", "ct"]
    kinds = ["closed"] * 3 + ["open"] * 3
    # closed right, right, wrong: bounds 0.05, 0.2236, 0.1354; open right, wrong, right: 0.05, 0.025, 0.1354
    assert calibrate_kinds(answers, truths, kinds, 0.1) == {"closed": 0.6, "open": -2.0}
    assert calibrate_kinds(answers, truths, kinds, 0.2) == {"closed": 0.9, "open": math.inf}
    # a run without open validation questions never trusts an open answer
    assert calibrate_kinds(answers[:3], truths[:3], kinds[:3], 0.1)["open"] == math.inf
