"""What a guard costs and buys on labelled questions: coverage (the answered share), accuracy on the answered
share against the unguarded accuracy of the same answers, and the refusal rate on the shipped out-of-scope
set. `python -m medvqa.evaluate guard=patient` reports these.

    report = guarded_scores(guard, questions, answers, truths, truth_kinds)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from medvqa.eval.metrics import score_item
from medvqa.guard.abstain import is_correct
from medvqa.guard.guard import Guard
from medvqa.guard.shipped import refusal_report

log = logging.getLogger("medvqa")


def guarded_scores(guard: Guard, questions: Sequence[str], answers: Sequence, truths: Sequence[str],
                   truth_kinds: Sequence[str], images: Sequence | None = None) -> dict:  # fmt: skip
    """Each answer (medvqa.inference.Answer, already computed) goes through `guard.decide` as if the model
    had just given it, with its image's novelty verdict (`images`, one per question; None: no check).
    `accuracy_*` is right-by-protocol (closed_acc for closed, open_recall 1 for open); closed_acc and
    open_recall are also given per share; `novel_rate` is the share of questions whose image the novelty
    check flagged (null without the check)."""
    images = list(images) if images is not None else [None] * len(questions)
    decisions = [
        guard.decide(q, lambda _q, a=a: a, v) for q, a, v in zip(questions, answers, images, strict=True)
    ]
    rows = [
        (d.guard == "answered", is_correct(a.answer, t, k, q), k, score_item(a.answer, t, k, q))
        for d, a, t, k, q in zip(decisions, answers, truths, truth_kinds, questions, strict=True)
    ]
    answered = [r for r in rows if r[0]]
    report = {
        "questions": len(rows),
        "coverage": _mean([r[0] for r in rows]),
        "accuracy_answered": _mean([r[1] for r in answered]),
        "accuracy_unguarded": _mean([r[1] for r in rows]),
        "decisions": dict(Counter(d.guard for d in decisions)),
        "rules": dict(Counter(d.rule for d in decisions)),
        "novel_rate": _mean([v.novel for v in images if v is not None]) if guard.novelty else None,
    }
    for share, subset in (("answered", answered), ("unguarded", rows)):
        report[f"closed_acc_{share}"] = _mean([r[3]["closed_acc"] for r in subset if r[2] == "closed"])
        report[f"open_recall_{share}"] = _mean([r[3]["open_recall"] for r in subset if r[2] != "closed"])
    return report


def shipped_refusal(guard: Guard) -> dict:
    """The scope guard on the shipped set (medvqa/guard/data/questions.jsonl); {} with no scope (guard=off)."""
    if guard.scope is None:
        return {}
    report = refusal_report(guard.scope)
    return {k: report[k] for k in ("out_of_scope", "refusal_rate", "in_scope", "pass_rate", "missed")}


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else None


def check_guard(cfg) -> None:
    """Refuse, before anything is scored or any model loads, what `evaluate guard=` cannot honour: it needs
    run= (the scope guard reads the run's training questions, the calibration its validation split), the
    model's confidence (no predictions=), and the run's own model and adapter (the guard's predictor is
    the run's: with adapter= or another model= the metrics and the guard figures would be two models').
    Warns when split=val: the thresholds were calibrated on those very answers (in-sample)."""
    mode = cfg.guard.mode
    if not cfg.get("run"):
        raise ValueError(f"guard={mode} needs run=<a run folder>: the scope guard uses the run's "
                         "training questions and its calibration the run's validation split")  # fmt: skip
    if cfg.get("predictions"):
        raise ValueError("guard= needs the model's confidence, which an answer file (predictions=) has not: "
                         "drop predictions= or guard=")  # fmt: skip
    from omegaconf import OmegaConf

    run_cfg = OmegaConf.load(Path(cfg.run) / "config.yaml")
    mixed = ["adapter="] if cfg.get("adapter") else []
    if OmegaConf.select(run_cfg, "model") is not None and OmegaConf.to_container(
        run_cfg.model, resolve=True
    ) != OmegaConf.to_container(cfg.model, resolve=True):
        mixed.append("model=")
    if mixed:
        raise ValueError(f"guard={mode} with {' and '.join(mixed)}: the guard scores run={cfg.run}'s own model "
                         f"and adapter, so its figures would not be those of the metrics beside them; drop "
                         f"{' and '.join(mixed)} or guard=")  # fmt: skip
    if cfg.get("split") == "val":
        log.warning("guard=%s split=val: the guard's thresholds are calibrated on the validation split, so its "
                    "coverage and accuracy here are in-sample (optimistic); use split=test", mode)  # fmt: skip


def evaluate_guard(cfg, datamodule, samples) -> tuple[dict, dict]:
    """`python -m medvqa.evaluate run=<run> guard=patient`: the run's predictor answers `samples` (the
    evaluated split), the run's guard (calibrated on its validation split) decides each, and the report says
    what that costs and buys. Returns (report, {question id: Decision})."""
    import torch
    from hydra.utils import instantiate

    from medvqa.guard.calibration import answer_samples
    from medvqa.inference import Predictor

    check_guard(cfg)
    gpu = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    predictor = Predictor.from_run(cfg.run, device="cuda" if gpu else "cpu")
    guard = instantiate(cfg.guard)(run_dir=cfg.run, predictor=predictor)
    answers = answer_samples(predictor, samples, datamodule, int(cfg.guard.get("batch_size", 16)))
    questions = [s.question for s in samples]
    images = sample_verdicts(guard, samples)
    report = guarded_scores(
        guard, questions, answers, [s.answer for s in samples], [s.answer_type for s in samples], images
    )
    decisions = {s.id: guard.decide(q, lambda _q, a=a: a, v)
                 for s, q, a, v in zip(samples, questions, answers, images, strict=True)}  # fmt: skip
    thresholds = {
        k: None if math.isinf(v) else v for k, v in guard.thresholds.items()
    }  # null: never answered
    calibration = {
        k: v | {"threshold": thresholds[k]} if k in thresholds else v for k, v in guard.calibration.items()
    }
    report = {"mode": guard.mode, "thresholds": thresholds, "calibration": calibration,
              "in_sample": cfg.get("split") == "val"} | report  # fmt: skip
    return report | {"shipped": shipped_refusal(guard)}, decisions


def sample_verdicts(guard: Guard, samples) -> list:
    """The novelty verdict of each sample's image, each distinct image decoded once (None: no check)."""
    if guard.novelty is None:
        return [None] * len(samples)
    by_image: dict[tuple, object] = {}
    for s in samples:
        key = (s.image, s.image_row, s.image_member)
        if key not in by_image:
            by_image[key] = guard.image_verdict(s.image, s.image_row, s.image_member)
    return [by_image[(s.image, s.image_row, s.image_member)] for s in samples]


def guard_line(report: dict) -> str:
    """One printed line of the guard's figures."""
    line = (f"guard={report['mode']}: coverage {_fmt(report['coverage'])}, accuracy on the answered share "
            f"{_fmt(report['accuracy_answered'])} (unguarded {_fmt(report['accuracy_unguarded'])})")  # fmt: skip
    if report.get("novel_rate") is not None:
        line += f"; images unlike the training images {_fmt(report['novel_rate'])} of the questions"
    shipped = report.get("shipped") or {}
    if shipped:
        line += (
            f"; shipped out-of-scope set refused {_fmt(shipped['refusal_rate'])} of {shipped['out_of_scope']}"
        )
    return line


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
