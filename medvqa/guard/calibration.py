"""A run's guard inputs from its own data: the training questions (scope) and the validation split's answers
(abstention thresholds). Nothing is written: the app and `predict guard=...` compute this at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvqa.data.images import open_image
from medvqa.guard.abstain import calibrate_kinds, score_of


def run_questions(run_dir: str | Path):
    """(datamodule set up with the run's data config, split and seed; the training questions). The run's
    stored (absolute) data.root is read as it is, never generated anew (medvqa/inference/run_data.py)."""
    from medvqa.inference.run_data import run_datamodule
    from medvqa.models.runs import run_config

    datamodule = run_datamodule(run_config(run_dir))
    return datamodule, [s.question for s in datamodule.splits["train"]]


def calibrate_run(datamodule, predictor, target: float, n: int | None, batch_size: int = 16):
    """({closed, open} thresholds, info) from the predictor's answers to the first `n` (None: all) validation
    questions. Images are opened as training opened them, a chunk at a time (never the whole split)."""
    val = datamodule.splits.get("val") or []
    val = val[:n] if n is not None else val
    answers = answer_samples(predictor, val, datamodule, batch_size)
    thresholds = calibrate_kinds(answers, [s.answer for s in val], [s.answer_type for s in val], target)
    info: dict[str, Any] = {"items": len(val), "target_precision": target}
    for kind, threshold in thresholds.items():
        kept = [a for a in answers if a.kind == kind and score_of(a) is not None and score_of(a) >= threshold]
        info[kind] = {
            "items": sum(a.kind == kind for a in answers),
            "answered": len(kept),
            "threshold": threshold,
        }
    return thresholds, info


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
