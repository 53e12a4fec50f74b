"""A run's guard inputs from its own data: the training questions (scope), and the validation split's answers:
the confidence's temperature (temperature scaling, medvqa/eval/calibration.py) and the abstention thresholds
(medvqa/guard/abstain.py). The app and `predict guard=...` compute these at start; the temperature is stored
in the run's calibration.json (with the validation ECE before and after), so the app shows a number only
for a confidence that was calibrated."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medvqa.data.images import open_image
from medvqa.eval.metrics import score_item
from medvqa.guard.abstain import calibrate_kinds, score_of

log = logging.getLogger("medvqa")


def run_questions(run_dir: str | Path):
    """(datamodule set up with the run's data config, split and seed; the training questions). The run's
    stored (absolute) data.root is read as it is, never generated anew (medvqa/inference/run_data.py)."""
    from medvqa.inference.run_data import run_datamodule
    from medvqa.models.runs import run_config

    datamodule = run_datamodule(run_config(run_dir))
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
        items = [{"image": open_image(s, hp.max_image_side, hp.window, hp.get("dicom_frame", "middle")),
                  "question": s.question, "id": s.id}
                 for s in chunk]  # fmt: skip
        answers += predictor.answer_many(items, batch_size=batch_size, progress=False)
    return answers


def run_novelty(datamodule, quantile: float | None, max_images: int | None = 2000):
    """The run's NoveltyGuard (medvqa/guard/novelty.py), fitted on (the first `max_images` distinct) training
    images and thresholded on the validation images that are not also training images; None when
    `quantile` is None (guard.novelty_quantile=null: no image check). Images are decoded as the run decodes
    them, one at a time; an image that cannot be decoded is left out."""
    from medvqa.data.errors import DataError
    from medvqa.guard.novelty import NoveltyGuard

    if quantile is None:
        return None
    hp = datamodule.hparams

    def images(split: str, leave_out: set[str]):
        seen: set[str] = set()
        for s in datamodule.splits.get(split) or []:
            if (
                s.image in seen
                or s.image in leave_out
                or (max_images is not None and len(seen) >= max_images)
            ):
                continue
            seen.add(s.image)
            try:
                yield open_image(s, hp.max_image_side, hp.window, hp.get("dicom_frame", "middle"))
            except DataError:
                continue

    train_paths = {s.image for s in datamodule.splits["train"]}
    # generators: each image is reduced to its features as it is decoded, never all held at once
    return NoveltyGuard.fit(images("train", set()), images("val", train_paths), quantile, hp.max_image_side,
                            hp.window, hp.get("dicom_frame", "middle"))  # fmt: skip
