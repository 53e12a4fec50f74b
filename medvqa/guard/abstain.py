"""Abstention: answer only when the model's confidence is at or above a threshold chosen on held-out data so
that the precision on the answered share is, with 95% confidence, at least a target.

    t = calibrate(confidences, correct, target=0.95)   # lowest t whose exact lower bound reaches 0.95
    score_of(answer)  # closed: Answer.confidence; open: Answer.mean_logprob

The observed precision of a small answered share is noisy: 3 right of 3 is precision 1.0, but all that
three answers show is that it is above 0.37 (the one-sided 95% Clopper-Pearson bound). A threshold is
therefore accepted only where the lower bound of the answered share's precision reaches the target
(medvqa/eval/calibration.py clopper_pearson_lower): at 0.95 that takes at least 59 right answers in a row.
Closed and open answers have scores on different scales (a probability vs a mean token log-probability),
so each kind gets its own threshold, chosen on the validation questions of that kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from medvqa.answers import closed_verdict, open_recall, parsed_answer
from medvqa.eval.calibration import clopper_pearson_lower

BOUND_LEVEL = 0.95  # the one-sided confidence of the precision's lower bound


def calibrate(confidences: Sequence[float], correct: Sequence[bool], target: float,
              level: float = BOUND_LEVEL) -> float:  # fmt: skip
    """The lowest threshold t such that the items with confidence >= t, answered, have a one-sided `level`
    Clopper-Pearson lower bound of their precision of at least `target`: the largest answered share whose
    precision is shown, not only observed, to reach it.

    Ties move together: a cut can only fall between distinct confidence values. Returns `math.inf` (answer
    nothing) when no answered share reaches the target, or when there are no items.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} correctness flags")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"guard.target_precision={target}: use a precision in (0, 1]")
    pairs = sorted(zip(confidences, correct, strict=True), key=lambda p: -p[0])
    threshold, right = math.inf, 0
    for k, (conf, ok) in enumerate(pairs, start=1):
        right += bool(ok)
        last_of_tie = k == len(pairs) or pairs[k][0] < conf
        if last_of_tie and clopper_pearson_lower(right, k, level) >= target:
            threshold = conf
    return threshold


def score_of(answer) -> float | None:
    """The number the threshold applies to: a closed answer's probability among the polar options, an open
    answer's mean token log-probability; None when the predictor gave none."""
    value = answer.confidence if answer.kind == "closed" else answer.mean_logprob
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def is_correct(prediction: str, truth: str, kind: str, question: str = "") -> bool:
    """Right by the scoring protocol (medvqa/answers.py, as closed_acc reads it): the strict closed rule
    for closed questions, every truth word present (open_recall 1) for open ones."""
    if kind == "closed":
        return closed_verdict(parsed_answer(prediction), truth, question).correct
    return open_recall(prediction, truth) == 1.0


def calibrate_kinds(
    answers, truths: Sequence[str], truth_kinds: Sequence[str], target: float
) -> dict[str, float]:
    """One threshold per answer kind (closed / open: `Answer.kind`, the kind known when answering) from
    answers to held-out questions, scored against their truths by the truths' own answer types. A kind
    without held-out answers gets `math.inf`: the model is never trusted on it unproven."""
    thresholds = {}
    for kind in ("closed", "open"):
        scored = [
            (score_of(a), is_correct(a.answer, t, tk, a.question))
            for a, t, tk in zip(answers, truths, truth_kinds, strict=True)
            if a.kind == kind and score_of(a) is not None
        ]
        thresholds[kind] = calibrate([s for s, _ in scored], [c for _, c in scored], target)
    return thresholds
