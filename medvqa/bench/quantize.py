"""Full precision against each quantized form of one run's exported model.

    python -m medvqa.bench quantize [run=/tmp/rdef] [forms=int8,int4] [device=cpu] [test_items=all]
                                    [latency_items=32]

Exports the run (`medvqa.inference.export.export_run`, merge check skipped: that is export's own job) in fp32
and in every form, then, in a fresh process per model (so peak memory is its own), loads the export with
plain `AutoModelForImageTextToText.from_pretrained` and measures:
- `size_mb`: the checkpoint's weight files on disk;
- `peak_memory_mb`: peak resident memory (RSS) of loading the model and answering the test split, above
  the process's memory before loading it (imports and the collated test batches excluded);
- `latency_s`: median seconds to answer one image (batch size 1, greedy, the run's max_new_tokens) over
  the first `latency_items` test items, after one warm-up;
- `closed_acc` (and the other scores): the test split (or its first `test_items`) scored as the run was.
Printed as JSON: per-form results and flat keys `<form>.size_ratio`, `<form>.peak_memory_ratio`,
`<form>.latency_ratio` (form / fp32) and `<form>.closed_acc_delta` (form - fp32).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

FULL = "fp32"


def _measure(
    folder: str, run: str, device: str, test_items: int | None, latency_items: int
) -> dict[str, Any]:
    """Runs in a fresh (spawned) process."""
    import resource

    import psutil
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvqa.eval.metrics import VQAScores
    from medvqa.inference.export import check_batches, eval_stage

    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg, dev = OmegaConf.load(Path(run) / "config.yaml"), torch.device(device)
    processor = AutoProcessor.from_pretrained(folder)
    batches = check_batches(cfg, processor, test_items, dev)
    singles = check_batches(cfg, processor, latency_items + 1, dev, batch_size=1)
    before = psutil.Process().memory_info().rss
    model = AutoModelForImageTextToText.from_pretrained(folder, device_map=str(dev)).eval()
    stage = eval_stage(cfg, model, processor)
    scores = VQAScores()
    for batch in batches:
        meta = batch["meta"]
        scores.update(stage.generate_answers(batch), meta["answer"], meta["answer_type"], meta["question"])
    times = []
    for batch in singles:
        started = time.perf_counter()
        stage.generate_answers(batch)
        times.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    if dev.type == "cuda":
        peak = before + torch.cuda.max_memory_allocated()
    return {
        "size_mb": sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 2**20,
        "peak_memory_mb": max(peak - before, 0) / 2**20,
        "latency_s": statistics.median(times[1:]) if len(times) > 1 else float("nan"),
        **{k: float(v) for k, v in scores.compute().items()},
    }


def _in_fresh_process(*args) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, args)


def run(
    run: str = "/tmp/rdef",
    forms: str = "int8,int4",
    device: str = "cpu",
    test_items: str | int | None = None,
    latency_items: str | int = 32,
) -> dict[str, Any]:
    from medvqa.inference.export import export_run
    from medvqa.models.quantize import check_form

    names = [check_form(f) for f in str(forms).split(",") if f]
    n_test = int(test_items) if test_items not in (None, "", "all", "null") else None
    results: dict[str, Any] = {"run": run, "device": device, "test_items": n_test or "all"}
    with tempfile.TemporaryDirectory(prefix="medvqa-bench-quantize-") as tmp:
        for form in [FULL, *names]:
            folder = Path(tmp) / form
            export_run(run, folder, check_items=0, quantize=None if form == FULL else form, device=device)
            results[form] = _in_fresh_process(str(folder), run, device, n_test, int(latency_items))
    full = results[FULL]
    metrics = Path(run) / "metrics.json"  # fp32 export vs the run's own test score: the merge kept it
    if metrics.is_file():
        results["run_test_closed_acc"] = (
            json.loads(metrics.read_text()).get("test", {}).get("test/closed_acc")
        )
    for form in names:
        got = results[form]
        results[f"{form}.size_ratio"] = got["size_mb"] / full["size_mb"]
        results[f"{form}.peak_memory_ratio"] = got["peak_memory_mb"] / max(full["peak_memory_mb"], 1e-9)
        results[f"{form}.latency_ratio"] = got["latency_s"] / full["latency_s"]
        results[f"{form}.closed_acc_delta"] = got["closed_acc"] - full["closed_acc"]
    results["targets"] = {"int8.size_ratio_max": 0.6, "int8.closed_acc_delta_min": -0.02}
    return results
