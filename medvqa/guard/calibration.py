"""A run's guard inputs from its own data: the training questions (scope), and the validation split's answers:
the confidence's temperature (temperature scaling, medvqa/eval/calibration.py) and the abstention thresholds
(medvqa/guard/abstain.py). The app and `predict guard=...` compute these at start; the temperature is stored
in the run's calibration.json (with the validation ECE before and after), so the app shows a number only
for a confidence that was calibrated."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from medvqa.data.images import open_image
from medvqa.eval.metrics import score_item
from medvqa.guard.abstain import calibrate_kinds, score_of

log = logging.getLogger("medvqa")


def run_questions(run_dir: str | Path):
    """(datamodule set up with the run's data config, split and seed; the training questions)."""
    from medvqa.models.runs import run_config

    cfg = run_config(run_dir)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    return datamodule, [s.question for s in datamodule.splits["train"]]


def calibrate_run(datamodule, predictor, target: float, n: int | None, batch_size: int = 16,
                  run_dir: str | Path | None = None):  # fmt: skip
    """({closed, open} thresholds, info) from the predictor's answers to the first `n` (None: all) validation
    questions. First a temperature is fitted on those answers and set on the predictor (and, when fitted,
    written to `run_dir`'s calibration.json when given; too few answers keep the run's stored one, if any); the thresholds are then chosen on the recalibrated answers.
    Images are opened as training opened them, a chunk at a time (never the whole split)."""
    from medvqa.eval.calibration import fit_on_val, write_calibration

    val = datamodule.splits.get("val") or []
    val = val[:n] if n is not None else val
    answers = answer_samples(predictor, val, datamodule, batch_size)
    truths, kinds = [s.answer for s in val], [s.answer_type for s in val]
    fit = fit_on_val(answer_rows(answers, truths, kinds))
    if fit["fitted"]:
        predictor.temperature = fit["temperature"]
        if run_dir is not None:
            write_calibration(run_dir, fit, source="app")
    elif predictor.temperature is None:
        log.warning("confidence not calibrated: %s; the app shows confidence in words only", fit["reason"])
    answers = [predictor.recalibrated(a) for a in answers]
    thresholds, info = threshold_info(answers, truths, kinds, target)
    return thresholds, info | {"temperature": fit}


def threshold_info(answers, truths, kinds, target: float) -> tuple[dict[str, float], dict[str, Any]]:
    """({closed, open} thresholds, info: items, answered and threshold per kind) from scored answers."""
    thresholds = calibrate_kinds(answers, truths, kinds, target)
    info: dict[str, Any] = {"items": len(answers), "target_precision": target}
    for kind, threshold in thresholds.items():
        kept = [a for a in answers if a.kind == kind and score_of(a) is not None and score_of(a) >= threshold]
        info[kind] = {
            "items": sum(a.kind == kind for a in answers),
            "answered": len(kept),
            "threshold": threshold,
        }
    return thresholds, info


def answer_rows(answers, truths, kinds) -> list[dict[str, Any]]:
    """Answers as prediction rows (prediction, answer, answer_type, scores, option_logprobs): what
    medvqa/eval/calibration.py reads."""
    return [{"prediction": a.answer, "answer": t, "answer_type": k, "scores": score_item(a.answer, t, k),
             "option_logprobs": a.option_logprobs} for a, t, k in zip(answers, truths, kinds, strict=True)]  # fmt: skip


def answer_samples(predictor, samples, datamodule, batch_size: int = 16) -> list:
    """The predictor's Answers to `samples` (VQASample), images opened as the run's data config opens them
    (data.max_image_side, data.window), 64 at a time: a split's pixels are never all in memory."""
    hp = datamodule.hparams
    answers = []
    for start in range(0, len(samples), 64):
        chunk = samples[start : start + 64]
        items = [{"image": open_image(s, hp.max_image_side, hp.window), "question": s.question, "id": s.id}
                 for s in chunk]  # fmt: skip
        answers += predictor.answer_many(items, batch_size=batch_size, progress=False)
    return answers
