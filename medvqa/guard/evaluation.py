"""What a guard costs and buys on labelled questions: coverage (the answered share), accuracy on the answered
share (its precision) against the unguarded accuracy of the same answers, each with a 95% interval, and the
refusal rate on the shipped out-of-scope set. `python -m medvqa.evaluate guard=patient` reports these from
the generation the evaluation scored (its prediction rows carry each answer's option log-probabilities
and mean log-probability: medvqa/inference/scoring.py); nothing is generated a second time.

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
                   truth_kinds: Sequence[str], images: Sequence | None = None,
                   clusters: tuple[Sequence | None, str] = (None, "question")) -> dict:  # fmt: skip
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
        **share_intervals([r[0] for r in rows], [r[1] for r in rows], clusters=clusters),
        "decisions": dict(Counter(d.guard for d in decisions)),
        "rules": dict(Counter(d.rule for d in decisions)),
        "novel_rate": _mean([v.novel for v in images if v is not None]) if guard.novelty else None,
    }
    for share, subset in (("answered", answered), ("unguarded", rows)):
        report[f"closed_acc_{share}"] = _mean([r[3]["closed_acc"] for r in subset if r[2] == "closed"])
        report[f"open_recall_{share}"] = _mean([r[3]["open_recall"] for r in subset if r[2] != "closed"])
    return report


def share_intervals(
    answered: Sequence[bool],
    correct: Sequence[bool],
    n_boot: int = 1000,
    seed: int = 0,
    clusters: tuple[Sequence | None, str] = (None, "question"),
) -> dict:
    """Intervals of the coverage and of the precision on the answered share: percentile bootstraps over the
    questions (medvqa/eval/calibration.py `resampled`), and the precision's exact one-sided 95% lower bound
    (Clopper-Pearson over the answered questions, the bound the thresholds were chosen by)."""
    import numpy as np

    from medvqa.eval.calibration import clopper_pearson_lower, resampled

    if not answered:
        return {}
    a, c = np.asarray(answered, dtype=bool), np.asarray(correct, dtype=bool)

    def precision(i):
        return float(c[i][a[i]].mean()) if a[i].any() else float("nan")

    ids, unit = clusters  # (one cluster id per question, eval.ci_unit as used): whole clusters resampled
    return {"coverage_ci": resampled(len(a), lambda i: float(a[i].mean()), n_boot, seed, ids, unit),
            "accuracy_answered_ci": resampled(len(a), precision, n_boot, seed, ids, unit),
            "accuracy_answered_lower_95": clopper_pearson_lower(int((a & c).sum()), int(a.sum()), 0.95)}  # fmt: skip


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


def evaluate_guard(
    cfg, rows: list[dict], val_rows: list[dict], temperature: float | None
) -> tuple[dict, dict]:
    """`python -m medvqa.evaluate run=<run> guard=patient`: the run's guard decides each of the evaluated
    split's scored `rows`; its thresholds are chosen on the validation split's scored `val_rows` (unless
    guard.thresholds fixes them), confidences under `temperature` (None: uncalibrated, T = 1), and the
    report says what that costs and buys. Returns (report, {question id: Decision})."""
    from hydra.utils import instantiate

    from medvqa.guard.calibration import threshold_info

    check_guard(cfg)
    answers, val_answers = rows_answers(rows, temperature), rows_answers(val_rows, temperature)
    fixed = cfg.guard.get("thresholds")
    thresholds, info = threshold_info(val_answers, [r["answer"] for r in val_rows],
                                      [r["answer_type"] for r in val_rows], float(cfg.guard.target_precision))  # fmt: skip
    guard = instantiate(cfg.guard)(run_dir=cfg.run, predictor=None, thresholds=fixed or thresholds)
    if not fixed and guard.mode != "off":
        kept = {k: v for k, v in guard.calibration.items() if k == "novelty"}  # the image check's own record
        guard.calibration = kept | info | {"temperature": temperature, "source": "the evaluation's val rows"}
    questions = [r["question"] for r in rows]
    images = row_verdicts(guard, rows)
    from medvqa.eval.stats import row_clusters

    report = guarded_scores(guard, questions, answers, [r["answer"] for r in rows],
                            [r["answer_type"] for r in rows], images,
                            row_clusters(rows, cfg.eval.get("ci_unit", "patient")))  # fmt: skip
    decisions = {r["id"]: guard.decide(q, lambda _q, a=a: a, v)
                 for r, q, a, v in zip(rows, questions, answers, images, strict=True)}  # fmt: skip
    thresholds = {
        k: None if math.isinf(v) else v for k, v in guard.thresholds.items()
    }  # null: never answered
    calibration = {
        k: v | {"threshold": thresholds[k]} if k in thresholds else v for k, v in guard.calibration.items()
    }
    report = {"mode": guard.mode, "thresholds": thresholds, "calibration": calibration,
              "in_sample": cfg.get("split") == "val"} | report  # fmt: skip
    return report | {"shipped": shipped_refusal(guard)}, decisions


def row_verdicts(guard: Guard, rows: Sequence[dict]) -> list:
    """The novelty verdict of each prediction row's image, each distinct image decoded once (None: no check)."""
    if guard.novelty is None:
        return [None] * len(rows)
    by_image: dict[tuple, object] = {}
    keys = [(r.get("image", ""), r.get("image_row"), r.get("image_member", "")) for r in rows]
    for key in keys:
        if key not in by_image:
            by_image[key] = guard.image_verdict(*key)
    return [by_image[key] for key in keys]


def rows_answers(rows: Sequence[dict], temperature: float | None) -> list:
    """Prediction rows (with the scored generation's `option_logprobs` / `mean_logprob`) as the Answers the
    guard decides on, closed-answer probabilities under `temperature`."""
    from medvqa.inference.predictor import Answer
    from medvqa.inference.scoring import confidence, probabilities

    out = []
    for r in rows:
        probs = probabilities(r.get("option_logprobs"), temperature or 1.0)
        out.append(Answer(id=r["id"], image=r.get("image", ""), question=r["question"], answer=r["prediction"],
                          kind="closed" if probs else "open", confidence=confidence(r["prediction"], probs),
                          options=probs, mean_logprob=float(r.get("mean_logprob", math.nan)),
                          completion=r.get("completion", r["prediction"]), option_logprobs=r.get("option_logprobs"),
                          calibrated=temperature is not None))  # fmt: skip
    return out


def guard_line(report: dict) -> str:
    """One printed line of the guard's figures: coverage and precision on the answered share with their 95%
    intervals (cluster bootstrap, eval.ci_unit) and the precision's exact lower bound."""
    line = (f"guard={report['mode']}: coverage {_fmt(report['coverage'])}{_ci(report.get('coverage_ci'))}, "
            f"precision on the answered share {_fmt(report['accuracy_answered'])}"
            f"{_ci(report.get('accuracy_answered_ci'))}")  # fmt: skip
    if report.get("accuracy_answered") is not None:
        line += f" (exact one-sided 95% lower bound {_fmt(report.get('accuracy_answered_lower_95'))})"
    line += f", unguarded accuracy {_fmt(report['accuracy_unguarded'])}"
    if report.get("novel_rate") is not None:
        line += f"; images unlike the training images {_fmt(report['novel_rate'])} of the questions"
    shipped = report.get("shipped") or {}
    if shipped:
        line += (
            f"; shipped out-of-scope set refused {_fmt(shipped['refusal_rate'])} of {shipped['out_of_scope']}"
        )
    return line


def _ci(ci: dict | None) -> str:
    if not ci or ci.get("low") is None or math.isnan(ci["low"]):
        return ""
    return f" [{ci['low']:.3f}, {ci['high']:.3f}]"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
