"""Evaluation speed, batched against one item at a time, as JSON (issue 11: both at least 5x).

    python -m medvqa.bench eval [run=<run dir>] [items=256] [batch_size=64] [data_dir=data] [overrides="..."]

1. Generation + scoring: the first `items` test questions through the scoring path of training and
   `python -m medvqa.evaluate` (medvqa/eval/evaluation.py `score_split`: Lightning's test loop, batched
   greedy generation, the protocol's scores), once with data.eval_batch_size=`batch_size` and once with 1.
   The model is the run's (base + adapter) with run=, else the default tiny model untrained (which
   generates all max_new_tokens tokens: the longest case). Also: how many predictions agree.
2. BERTScore (the packaged MiniLM, loaded once, warmed up) of the same items' predictions against their
   answers: one `score()` call for all pairs, and one call per pair; `max_abs_diff` of the two F1 lists.
"""

from __future__ import annotations

import time
from typing import Any

TARGETS = {"generation_speedup_min": 5.0, "bertscore_speedup_min": 5.0}


def _module(cfg, run: str | None):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from medvqa.models.runs import load_run

    vlm = load_run(run) if run else instantiate(cfg.model)
    stage = OmegaConf.to_container(cfg.stage, resolve=True)
    for key in ("init_adapter", "monitor"):
        stage.pop(key, None)
    return instantiate(stage, model=vlm.model.eval(), processor=vlm.processor), vlm.processor


def _scored(cfg, module, processor, items: int, batch_size: int) -> tuple[float, list[dict[str, Any]]]:
    """(seconds, rows) of score_split over the first `items` test questions at `batch_size`."""
    from hydra.utils import instantiate

    from medvqa.eval.evaluation import score_split
    from medvqa.evaluate import eval_trainer

    datamodule = instantiate(cfg.data, eval_batch_size=batch_size, limit={"test": items})
    datamodule.setup()
    datamodule.processor = processor
    trainer = eval_trainer(cfg)
    started = time.perf_counter()
    _, rows = score_split(trainer, module, datamodule, "test")
    return time.perf_counter() - started, rows


def _bertscore(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from medvqa.eval.bertscore import BERTScore

    preds, refs = [r["prediction"] for r in rows], [r["answer"] for r in rows]
    scorer = BERTScore()
    scorer.score(preds[:2], refs[:2])  # load and warm the model outside the clocks
    started = time.perf_counter()
    batched = scorer.score(preds, refs)["bertscore_f1"]
    batched_s = time.perf_counter() - started
    started = time.perf_counter()
    single = [scorer.score([p], [r])["bertscore_f1"][0] for p, r in zip(preds, refs, strict=True)]
    single_s = time.perf_counter() - started
    return {"pairs": len(preds), "batched_s": round(batched_s, 3), "per_pair_s": round(single_s, 3),
            "speedup": round(single_s / batched_s, 2),
            "max_abs_diff": max(abs(a - b) for a, b in zip(batched, single, strict=True))}  # fmt: skip


def run(
    run: str | None = None,
    items: str = "256",
    batch_size: str = "64",
    data_dir: str = "data",
    overrides: str = "",
) -> dict[str, Any]:
    import torch

    from medvqa.evaluate import compose_evaluate

    base = [f"paths.data_dir={data_dir}", "callbacks.progress_bar=null", *overrides.split()]
    cfg = compose_evaluate([*base, *([f"run={run}"] if run else [])], "/tmp/medvqa-bench-eval")
    n, size = int(items), int(batch_size)
    module, processor = _module(cfg, run)
    _scored(cfg, module, processor, size, size)  # warm-up: first-call costs stay out of both clocks
    batched_s, batched = _scored(cfg, module, processor, n, size)
    single_s, single = _scored(cfg, module, processor, n, 1)
    agree = sum(a["prediction"] == b["prediction"] for a, b in zip(batched, single, strict=True))
    return {
        "model": run or "tiny_qwen2_vl (untrained)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "generation": {
            "items": len(batched),
            "batch_size": size,
            "batched_s": round(batched_s, 3),
            "one_at_a_time_s": round(single_s, 3),
            "speedup": round(single_s / batched_s, 2),
            "items_per_s_batched": round(len(batched) / batched_s, 1),
            "items_per_s_one_at_a_time": round(len(single) / single_s, 1),
            "same_predictions": agree,
        },  # fmt: skip
        "bertscore": _bertscore(batched),
        "targets": TARGETS,
    }
