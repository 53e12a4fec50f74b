"""A guarded answer's confidence in the words a patient reads (the app, medvqa/app.py; docs/app.md): a number only
from a calibrated run, else words that say why there is none. Pure functions of the decision."""

from __future__ import annotations

import math

from medvqa.guard.guard import Decision

__all__ = ["UNCALIBRATED", "confidence_status", "plain_confidence"]

UNCALIBRATED = (
    "no number shown: this model's confidence has not been checked against answers it was not trained on"
)


def plain_confidence(decision: Decision) -> str:
    """The model's confidence in words, or why there is none. Closed answers: words, and the probability of
    the chosen option only when the run's confidence was calibrated (temperature scaling fitted on its
    validation split: Answer.calibrated); else the words say why no number is shown. Open answers: words
    only, from the mean per-token probability exp(mean_logprob), which says how steadily the model worded
    its answer, not how likely it is to be right, so no number is shown for it (docs/app.md)."""
    answer = decision.answer
    if answer is None:
        return "not asked: this question was not sent to the model"
    closed = answer.kind == "closed"
    p = answer.confidence if closed else _exp(answer.mean_logprob)
    if p is None or math.isnan(p):
        return "unknown"
    pct = round(100 * p)  # the words follow the number shown
    words = "very sure" if pct >= 95 else "fairly sure" if pct >= 80 else "somewhat unsure" if pct >= 60 else "unsure"  # fmt: skip
    if not closed:
        return f"{words} of its wording"
    return f"{words} ({pct} in 100)" if getattr(answer, "calibrated", False) else f"{words} ({UNCALIBRATED})"


def confidence_status(predictor) -> str:
    """The start-up line saying whether closed answers will show a number, and why not."""
    if predictor.temperature is not None:
        return (
            f"confidence: calibrated (temperature {predictor.temperature:.3f}, fit on the validation split)"
        )
    return (
        f"confidence: not calibrated, shown in words only ({UNCALIBRATED}); run python -m medvqa.evaluate "
        "run=<run> (eval.calibrate=true) or start the app with a guard that calibrates (guard.thresholds=null)"
    )


def _exp(logprob: float | None) -> float | None:
    return None if logprob is None else math.exp(logprob)
