"""calibrate() against thresholds worked out by hand, and the per-kind calibration."""

from __future__ import annotations

import math

import pytest

from medvqa.guard.abstain import calibrate, calibrate_kinds, is_correct, score_of
from tests.guard.fakes import FakeAnswer

CONF = [0.9, 0.8, 0.7, 0.6, 0.5]
RIGHT = [True, True, False, True, False]


@pytest.mark.parametrize(
    ("target", "threshold"),
    [
        # answered top-k precisions: 1/1, 2/2, 2/3, 3/4, 3/5
        (0.95, 0.8),  # the top two are right; a third answer (0.7, wrong) drops to 0.667
        (1.0, 0.8),
        (0.75, 0.6),  # top four: 3/4 = 0.75 reaches it, top five 0.6 does not
        (0.7, 0.6),
        (0.6, 0.5),  # everything answered: 3/5
    ],
)
def test_calibrate_on_hand_numbers(target, threshold):
    assert calibrate(CONF, RIGHT, target) == threshold


def test_calibrate_order_of_input_does_not_matter():
    assert calibrate(CONF[::-1], RIGHT[::-1], 0.75) == 0.6


def test_ties_are_cut_together():
    # 0.9 twice, one right one wrong: the pair answers at 1/2, so 0.9 alone is no threshold for 0.95
    assert calibrate([0.9, 0.9, 0.5], [True, False, True], 0.95) == math.inf
    assert calibrate([0.9, 0.9, 0.5], [True, False, True], 0.5) == 0.5  # 2/3 over all
    assert calibrate([0.9, 0.9, 0.5], [True, True, False], 0.95) == 0.9


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
    assert calibrate_kinds(answers, truths, kinds, 0.95) == {"closed": 0.9, "open": -0.05}
    # a run without open validation questions never trusts an open answer
    assert calibrate_kinds(answers[:3], truths[:3], kinds[:3], 0.95)["open"] == math.inf
