"""`python -m medvqa.bench train_step model=qwen2_vl_2b_shape precision=bf16 data.batch_size=4 [bench.*=...]`

Times real training steps (a Lightning Trainer over the configured datamodule, the stage's own
training_step, precision plugin, fp8 callback and gradient checkpointing) for each stage in `bench.stages`
(sft, dpo, grpo) with and without gradient checkpointing (`bench.checkpointing`), and prints one JSON object:
per run the step time (median of the timed steps), samples/s, tokens/s (text and image tokens apart, and the
vision tower's patches), the model FLOPs per step counted as the model runs (medvqa/bench/flops.py, where
the formula is: forward 2NT, input gradients 2NT only where gradients flow, weight gradients only for
trainable weights), achieved TFLOP/s and MFU against the device's peak, peak memory beside the pre-flight
memory estimate (medvqa/models/memory.py) and the exact bytes of parameters, gradients and optimizer state.
GRPO runs add the time shares of generation, scoring and the training pass (and completions/s).

Options (everything else is a config override, as for `python -m medvqa.run`; a `stage.*` override applies to
the stages whose config has that key, e.g. stage.max_completion_length=16 to GRPO only):
  bench.stages=sft,dpo,grpo  bench.checkpointing=false,true  bench.steps=5  bench.warmup=2
  bench.peak_tflops=<number>  (the peak to take MFU against; default: medvqa/bench/flops.py's table for
                              this GPU and precision; on a CPU MFU is null unless this is given)
  bench.out=<file.json>       (also write the JSON there)
Peak memory: torch.cuda.max_memory_allocated over the timed steps on a GPU; on a CPU the process's peak
resident set size so far (it only grows, so later runs of one call include the earlier runs' peaks).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from medvqa.bench.flops import FlopMeter, peak_tflops
from medvqa.callbacks.preflight import Preflight
from medvqa.models.memory import measured_bytes
from medvqa.run import build, compose_config

log = logging.getLogger(__name__)
_MISSING = object()
KEEP_CALLBACKS = ("fp8", "preflight")  # the ones that change what a step computes or that the bench reports


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepClock(L.Callback):
    """Wall time of each training batch (sync'd on a GPU), the FLOP meter reset when timing starts, and
    the GPU's peak memory over the timed steps."""

    def __init__(self, warmup: int, meter_factory):
        self.warmup, self.meter_factory = warmup, meter_factory
        self.times: list[float] = []
        self.meter: FlopMeter | None = None
        self.started = 0.0
        self.spent: dict[str, float] = {"generation": 0.0, "scoring": 0.0}  # GRPO phases (_clock_phases)

    def on_train_start(self, trainer, pl_module) -> None:  # after setup: fp8 has swapped its layers in
        self.meter = self.meter_factory(pl_module.model).attach()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.meter.reset()
            self.spent.update(dict.fromkeys(self.spent, 0.0))
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        _sync()
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.started)

    def on_train_end(self, trainer, pl_module) -> None:
        self.meter.detach()


def _clock_phases(module, clock: StepClock) -> None:
    """GRPO: time `sample` (generation; FLOPs counted under phase "generation") and `score` in place."""
    for method, phase in (("sample", "generation"), ("score", "scoring")):
        original = getattr(module, method)

        @functools.wraps(original)
        def timed(*args, _original=original, _phase=phase, **kwargs):
            _sync()
            started, clock.meter.phase = time.perf_counter(), _phase
            try:
                return _original(*args, **kwargs)
            finally:
                _sync()
                clock.meter.phase = "train"
                clock.spent[_phase] += time.perf_counter() - started

        setattr(module, method, timed)


def _trainer(cfg, clock: StepClock, steps: int) -> tuple[L.Trainer, Preflight]:
    named = {k: instantiate(v) for k, v in (cfg.get("callbacks") or {}).items() if k in KEEP_CALLBACKS and v}
    preflight = named.get("preflight") or Preflight()
    named["preflight"] = preflight
    trainer = instantiate(cfg.trainer, max_steps=steps, max_epochs=-1, limit_val_batches=0, val_check_interval=None,
                          check_val_every_n_epoch=None, num_sanity_val_steps=0, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=[clock, *named.values()])  # fmt: skip
    return trainer, preflight


def precision_kind(cfg) -> str:
    """bf16, fp16, fp8 or fp32: which peak MFU is taken against."""
    if (cfg.get("callbacks") or {}).get("fp8"):
        return "fp8"
    precision = str(cfg.trainer.get("precision", "32-true"))
    return "bf16" if precision.startswith("bf16") else "fp16" if precision.startswith("16") else "fp32"


def measure(overrides: list[str], stage: str, checkpointing: bool, steps: int, warmup: int,
            peak: float | None) -> dict[str, Any]:  # fmt: skip
    """One stage x checkpointing run: build, train warmup + steps batches, report (module docstring)."""
    general = [o for o in overrides if not o.startswith("stage.")]
    cfg = compose_config([*general, f"stage={stage}"], output_dir=tempfile.mkdtemp(prefix="medvqa-bench-"))
    with open_dict(cfg):
        cfg.stage.gradient_checkpointing = checkpointing
        for key, value in (o.split("=", 1) for o in overrides if o.startswith("stage.")):
            if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:  # only stages that have the key
                OmegaConf.update(cfg, key, yaml.safe_load(value))
    L.seed_everything(cfg.seed, verbose=False)
    _, datamodule, module = build(cfg)
    image_token = getattr(module.model.config, "image_token_id", None) or getattr(
        module.model.config, "image_token_index", None
    )
    clock = StepClock(warmup, lambda model: FlopMeter(model, image_token))
    if stage == "grpo":
        _clock_phases(module, clock)
    trainer, preflight = _trainer(cfg, clock, warmup + steps)
    trainer.fit(module, datamodule=datamodule)
    result = _report(cfg, stage, checkpointing, datamodule.batch_size, clock, peak)
    result["memory"] = _memory(preflight, module, trainer)
    result["memory_line"] = preflight.line
    del trainer, module, datamodule
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _report(cfg, stage, checkpointing, batch_size, clock: StepClock, peak) -> dict[str, Any]:
    n, spent = len(clock.times), clock.spent
    total_time, step = sum(clock.times), statistics.median(clock.times)
    meter = clock.meter
    train_tokens = meter.tokens["train"]
    flops = meter.total() / n
    achieved = flops / step
    result = {
        "stage": stage, "gradient_checkpointing": checkpointing, "precision": precision_kind(cfg),
        "batch_size": batch_size, "timed_steps": n, "step_seconds": round(step, 4),
        "step_seconds_all": [round(t, 4) for t in clock.times],
        "samples_per_s": round(batch_size / step, 3),
        "tokens_per_s": {k: round(train_tokens[k] / total_time, 1) for k in ("text", "image", "vision_patches")}
        | {"total": round((train_tokens["text"] + train_tokens["image"]) / total_time, 1)},
        "tokens_per_step": {k: train_tokens[k] / n for k in ("text", "image", "vision_patches")},
        "model_flops_per_step": flops,
        "flops_per_step_by_kind": {p: {k: v / n for k, v in c.items()} for p, c in meter.flops.items()},
        "achieved_tflops": float(f"{achieved / 1e12:.4g}"),
        "peak_tflops": peak,
        "mfu": float(f"{achieved / (peak * 1e12):.4g}") if peak else None,
    }  # fmt: skip
    if stage == "grpo":
        shares = {k: v / total_time for k, v in spent.items()}
        result["time_share"] = {k: round(v, 4) for k, v in shares.items()} | {
            "training": round(1 - sum(shares.values()), 4)
        }
        result["completions_per_s"] = round(batch_size * cfg.stage.num_generations / step, 3)
        gen = meter.total("generation") / n
        result["generation_flops_per_step"] = gen
        if peak and spent["generation"]:
            train_time = total_time * (1 - sum(shares.values()))
            result["mfu_training_pass"] = round((flops - gen) * n / train_time / (peak * 1e12), 4)
    return result


def _memory(preflight: Preflight, module, trainer) -> dict[str, Any]:
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    measured = measured_bytes(module.model, optimizer)
    estimate = preflight.estimate or {}
    out: dict[str, Any] = {"estimate_bytes": estimate, "measured_bytes": measured}
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
        out |= {"peak_bytes": peak, "peak_kind": "torch.cuda.max_memory_allocated"}
        if estimate:
            out["estimate_error"] = round(estimate["total"] / peak - 1, 4)
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out |= {"peak_bytes": rss, "peak_kind": "process peak RSS (CPU; grows across runs)"}
    return out


def _flag(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"bench.checkpointing={value}: use true, false or true,false")
    return value.lower() == "true"


def run(**options: str) -> dict[str, Any]:
    bench = {k.removeprefix("bench."): v for k, v in options.items() if k.startswith("bench.")}
    overrides = [f"{k}={v}" for k, v in options.items() if not k.startswith("bench.")]
    stages = bench.pop("stages", "sft,dpo,grpo").split(",")
    checkpointing = [_flag(v) for v in bench.pop("checkpointing", "false,true").split(",")]
    steps, warmup = int(bench.pop("steps", 5)), int(bench.pop("warmup", 2))
    out, given = bench.pop("out", None), bench.pop("peak_tflops", None)
    if bench:
        raise ValueError(
            f"unknown bench options {sorted(bench)}; see python -m medvqa.bench train_step's docstring"
        )
    cfg = compose_config([o for o in overrides if not o.startswith("stage.")])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    kind = precision_kind(cfg)
    peak = float(given) if given else (peak_tflops(device, kind) if device != "cpu" else None)
    runs = []
    for stage in stages:
        for ckpt in checkpointing:
            try:
                runs.append(measure(overrides, stage, ckpt, steps, warmup, peak))
            except torch.cuda.OutOfMemoryError as e:  # a batch that does not fit is a result, not a crash
                runs.append(
                    {"stage": stage, "gradient_checkpointing": ckpt, "error": f"out of memory: {e}"[:300]}
                )
                gc.collect()
                torch.cuda.empty_cache()
            print(_summary(runs[-1]), file=sys.stderr)
    result = {"bench": "train_step", "device": device, "date": time.strftime("%Y-%m-%d"),
              "model": cfg.model.get("name") or cfg.model.get("name_or_path") or cfg.model.get("family"),
              "overrides": overrides, "precision": kind, "peak_tflops": peak,
              "peak_source": "bench.peak_tflops" if given else "medvqa/bench/flops.py PEAK_TFLOPS",
              "torch": torch.__version__, "runs": runs}  # fmt: skip
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def _summary(r: dict[str, Any]) -> str:
    """One line per run on stderr: the estimate beside the measured peak."""
    if "error" in r:
        return f"train_step {r['stage']} checkpointing={r['gradient_checkpointing']}: {r['error']}"
    m = r["memory"]
    est = m["estimate_bytes"].get("total", 0) / 2**30
    return (f"train_step {r['stage']} checkpointing={r['gradient_checkpointing']}: {r['step_seconds']} s/step, "
            f"{r['samples_per_s']} samples/s, MFU {r['mfu']}; memory estimate {est:.2f} GB vs measured peak "
            f"{m['peak_bytes'] / 2**30:.2f} GB ({m['peak_kind']})")  # fmt: skip
