"""Scoring one split: the one path the end of training (medvqa/run.py) and `python -m medvqa.evaluate` share.

    metrics, rows = score_split(trainer, module, datamodule, "test", ckpt_path)  # Lightning's test loop
    record = evaluate_split(lambda: (metrics, rows), "test", cfg.eval, datamodule)

`score_split` runs the stage's own evaluation (generation, answer parsing, the protocol's scores: the
`{split}/...` values the stage logs) over any split and returns them with one prediction row per question.
`evaluate_split` adds what a reviewer asks for, from the rows, as `conf/eval/default.yaml` says:
the protocol (`medvqa`, or a published harness's exact port: medvqa/eval/protocols), text-generation metrics of the open answers, seeded
cluster bootstrap intervals (`<split>_ci`, resampling eval.ci_unit), the scorer's name and library versions,
and visual reliance (the split scored again with blank, swapped and no images against the real ones). An answer file scored elsewhere comes in as rows
(`metrics_from_rows`) and goes through the same `evaluate_split`.

`hooks` (callables row -> row) run on every prediction row before anything is computed from the rows: the
place for a per-row decision such as a guard that abstains (the row's scores are what it then counts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from medvqa.eval.metrics import VQAScores
from medvqa.eval.protocols import TABLE as PROTOCOL_TABLE
from medvqa.eval.stats import bootstrap_ci, row_clusters

log = logging.getLogger("medvqa")
SCORER = "medvqa-vqa-v1"
PROTOCOLS = tuple(PROTOCOL_TABLE)  # eval.protocol choices: medvqa/eval/protocols TABLE
LIBRARIES = ("torch", "transformers", "peft", "lightning", "torchmetrics", "pycocoevalcap", "bert-score")
# per-item text metrics that are item means (their corpus value is the mean): they join each row's scores,
# so they get intervals and breakdowns; BLEU and METEOR are corpus statistics and stay corpus-only
ITEM_TEXT_METRICS = ("rouge_l", "cider", "bertscore_p", "bertscore_r", "bertscore_f1")
Scorer = Callable[[], tuple[dict[str, float], list[dict[str, Any]]]]


def score_split(trainer, module, datamodule, split: str, ckpt_path: str | None = None) -> tuple[dict, list]:
    """The stage's test loop over `split` (any of train / val / test): ({"<split>/<metric>": value}, the
    prediction rows). The stage and datamodule are pointed at `split` for the call and back afterwards."""
    module.test_split, datamodule.test_split = split, split
    try:
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    finally:
        module.test_split, datamodule.test_split = "test", "test"
    metrics = {k: float(v) for k, v in results[0].items()}
    # values written by callbacks after the stage logged are not in the loop's results
    metrics |= {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    return metrics, list(module.predictions)


def metrics_from_rows(rows: Sequence[Mapping[str, Any]], split: str, skipped: int = 0) -> dict[str, float]:
    """The `<split>/...` protocol values from the rows' per-item scores, computed as VQAScores computes
    them (float64 sums in row order over the questions of each kind, then float32), so the rows of a
    run's predictions.jsonl give back its metrics.json values bit for bit."""
    out = {}
    for key in VQAScores.KEYS:
        values = [r["scores"][key] for r in rows if key in r["scores"]]
        total = 0.0
        for v in values:
            total += float(v)
        out[f"{split}/{key}"] = float(np.float32(total / max(len(values), 1)))
    return out | {f"{split}/scored": float(len(rows)), f"{split}/skipped": float(skipped)}


def apply_protocol(rows: list[dict[str, Any]], metrics: dict[str, float], split: str, protocol: str) -> None:
    """Score the rows under `protocol` (medvqa/eval/protocols: `medvqa` changes nothing; a published
    harness's port replaces each row's `scores` with its own and the split's protocol values in `metrics`
    with their means, so no medvqa-only value stands beside theirs; `scored` / `skipped` / `loss` stay)."""
    from medvqa.eval.protocols import means, scorer

    score_rows = scorer(protocol)
    if score_rows is None:
        return
    for row, scores in zip(rows, score_rows(rows), strict=True):
        row["scores"] = scores
    for key in VQAScores.KEYS:
        metrics.pop(f"{split}/{key}", None)
    metrics |= means(rows, split)


def intervals(
    rows: Sequence[Mapping[str, Any]], n_boot: int, seed: int, unit: str = "patient"
) -> dict[str, dict[str, Any]]:
    """{metric: cluster bootstrap 95% interval} for every per-item score the rows carry, resampling the
    rows' patients (else images; `unit`: eval.ci_unit) with the resampled unit and its count beside each
    interval (`unit`, `n_clusters`; medvqa/eval/stats.py)."""
    keys = sorted({k for r in rows for k in r["scores"]})
    out = {}
    for key in keys:
        scored = [r for r in rows if key in r["scores"]]
        clusters, used = row_clusters(scored, unit)
        values = [float(r["scores"][key]) for r in scored]
        out[key] = bootstrap_ci(values, n_boot=n_boot, seed=seed, clusters=clusters, unit=used)
    return out


def check_text_metrics(names: Sequence[str]) -> None:
    """Refuse, before any model loads, text metrics this machine cannot compute (no Java for METEOR)."""
    from medvqa.eval.text_metrics import COCO_METRICS, METRICS, MetricUnavailableError, require_java

    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"eval.text_metrics={list(names)}: unknown {unknown}; choose from {list(METRICS)}")
    if set(names) & set(COCO_METRICS):
        try:
            require_java()
        except MetricUnavailableError as e:
            raise ValueError(
                f"eval.text_metrics={list(names)}: {e}, e.g. eval.text_metrics=[bertscore]"
            ) from None


def add_text_metrics(rows: list[dict[str, Any]], metrics: dict[str, float], split: str, eval_cfg) -> dict:
    """BLEU-1..4 / ROUGE-L / METEOR / CIDEr / BERTScore of the open answers (eval.text_metrics) into
    `metrics` (corpus values, `<split>/<name>`) and into each open row's scores (the item-mean ones);
    returns the scorers that produced them."""
    names = list(eval_cfg.get("text_metrics") or [])
    open_rows = [r for r in rows if r["answer_type"] != "closed"]
    if not names or not open_rows:
        return {}
    from medvqa.eval.bertscore import BERTScore
    from medvqa.eval.text_metrics import text_metrics

    bertscore = None
    if "bertscore" in names:
        bertscore = BERTScore(eval_cfg.get("bertscore_model", "all-MiniLM-L6-v2"), eval_cfg.get("bertscore_layers"),
                              eval_cfg.get("bertscore_batch_size", 64))  # fmt: skip
    preds, refs = [r["prediction"] for r in open_rows], [r["answer"] for r in open_rows]
    out = text_metrics(preds, refs, ids=[r["id"] for r in open_rows], metrics=names, bertscore=bertscore)
    metrics |= {f"{split}/{k}": float(v) for k, v in out["corpus"].items()}
    for row, item in zip(open_rows, out["per_item"], strict=True):
        row["scores"] |= {k: float(v) for k, v in item.items() if k in ITEM_TEXT_METRICS}
    return out["scorers"]


def scorer_record(protocol: str, text_scorers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """metrics.json's `scorer`: what produced the numbers (name, protocol, library versions)."""
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = None
    return {
        "name": SCORER,
        "protocol": protocol,
        "libraries": libraries,
        "text_metrics": dict(text_scorers or {}),
    }


def evaluate_split(
    score: Scorer, split: str, eval_cfg, datamodule=None, hooks: Sequence[Callable[[dict], dict]] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score `split` with `score()` and complete it: returns (the metrics.json entries: `<split>`,
    `<split>_ci`, `scorer`, and `visual_reliance` when eval.visual_reliance is on; the prediction rows)."""
    metrics, rows = score()
    rows = [_hooked(row, hooks) for row in rows]
    if hooks:  # a hook may change scores: the split's values follow the rows
        metrics |= metrics_from_rows(rows, split, int(metrics.get(f"{split}/skipped", 0)))
    protocol = eval_cfg.get("protocol", "medvqa")
    apply_protocol(rows, metrics, split, protocol)
    text_scorers = add_text_metrics(rows, metrics, split, eval_cfg)
    record: dict[str, Any] = {split: metrics, "scorer": scorer_record(protocol, text_scorers)}
    if rows:
        record[f"{split}_ci"] = intervals(
            rows, eval_cfg.get("n_boot", 2000), eval_cfg.get("seed", 0), eval_cfg.get("ci_unit", "patient")
        )
    if eval_cfg.get("visual_reliance"):
        record["visual_reliance"] = visual_reliance(score, datamodule, split, rows, eval_cfg, hooks)
    return record, rows


def _hooked(row: dict[str, Any], hooks: Sequence[Callable[[dict], dict]]) -> dict[str, Any]:
    for hook in hooks:
        row = hook(row)
    return row


def visual_reliance(score: Scorer, datamodule, split: str, rows, eval_cfg, hooks=()) -> dict[str, Any]:
    """The split scored again with blank, swapped and no images (datamodule.image_mode) against the real
    images, and the gains, reliance and sensitivity (medvqa/eval/visual.py visual_gain). The reference is
    always the real images: a run trained with data.blank_images=true is scored on blank images in its
    headline, so here blank_images is switched off for every condition and the real pass is scored again."""
    from medvqa.eval.visual import MODES, visual_gain

    if datamodule is None:
        raise ValueError(
            "eval.visual_reliance=true needs the model and its images: not with predictions=<file>"
        )
    trained_blank = bool(datamodule.hparams.get("blank_images"))
    ablated = {}
    seed = eval_cfg.get("seed", 0)
    datamodule.swap_seed = seed
    datamodule.hparams.blank_images = False  # every condition shows what its name says
    try:
        for mode in ("real", *MODES) if trained_blank else MODES:
            datamodule.image_mode = mode
            log.info("visual reliance: scoring %s with %s images", split, mode)
            _, mode_rows = score()
            mode_rows = [_hooked(r, hooks) for r in mode_rows]
            apply_protocol(mode_rows, {}, split, eval_cfg.get("protocol", "medvqa"))
            ablated[mode] = mode_rows
    finally:
        datamodule.image_mode = "real"
        datamodule.hparams.blank_images = trained_blank
    real = ablated.pop("real", rows)
    unit = eval_cfg.get("ci_unit", "patient")
    record = visual_gain(real, ablated, eval_cfg.get("n_boot", 2000), seed, unit)
    reference = ("real images, scored again with data.blank_images switched off (the headline split score "
                 "used the blank images the run was trained on)" if trained_blank else "real images (the "
                 "headline split score)")  # fmt: skip
    return {"split": split, "seed": seed, "reference": reference} | record
