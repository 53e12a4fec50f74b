"""`python -m medvqa.bench grpo [steps=4] [warmup=1] [overrides="a=b c=d"]`

Runs GRPOModule.training_step plus backward and optimizer step on batches from the configured datamodule
(default: the tiny model on the synthetic data, `stage=grpo`), on the GPU when there is one. The module's
own pieces are timed in place (each wrapped with a clock): sampling (`generate`), scoring (rewards),
the policy forward, the reference forward (beta > 0) and the old-policy forward (num_iterations > 1);
backward + optimizer step are timed around the calls. Printed as JSON: prompts/s and completions/s for
one GRPO step, seconds per step and each phase's share of the step.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from medvqa.run import build, compose_config

PHASES = {"sample": "generation", "score": "scoring", "policy_logps": "policy_forward",
          "reference_logps": "reference_forward", "old_logps": "old_policy_forward"}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock_methods(module, device: torch.device, spent: dict[str, float], last: dict[str, Any]) -> None:
    """Wrap the module's phase methods (instance attributes shadow the class's) to add their wall time to
    `spent` and keep their latest output in `last`."""
    for method, phase in PHASES.items():
        original = getattr(module, method)

        @functools.wraps(original)
        def timed(*args, _original=original, _phase=phase, **kwargs):
            _sync(device)
            started = time.perf_counter()
            out = _original(*args, **kwargs)
            _sync(device)
            spent[_phase] += time.perf_counter() - started
            last[_phase] = out
            return out

        setattr(module, method, timed)


def _step(module, optimizer, batch, i: int, device: torch.device, spent: dict[str, float]) -> float:
    """One GRPO step (training_step, backward, optimizer step); returns its wall time and adds the backward
    + step time and the rest of training_step not in a timed phase (advantages, loss, logging) to `spent`."""
    in_phases = sum(spent[p] for p in PHASES.values())
    _sync(device)
    started = time.perf_counter()
    loss = module.training_step(batch, i)
    _sync(device)
    stepped = time.perf_counter()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    ended = time.perf_counter()
    spent["backward_and_step"] += ended - stepped
    spent["other"] += (stepped - started) - (sum(spent[p] for p in PHASES.values()) - in_phases)
    return ended - started


def run(steps: str = "4", warmup: str = "1", overrides: str = "") -> dict[str, Any]:
    steps_n, warmup_n = int(steps), int(warmup)
    cfg = compose_config(
        ["stage=grpo", *overrides.split()], output_dir=tempfile.mkdtemp(prefix="medvqa-bench-")
    )
    L.seed_everything(cfg.seed, verbose=False)
    _, datamodule, module = build(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device).model.train()
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    optimizer = module.optimizer_factory(params=module.trainable_parameters())
    # no Trainer and no accumulation here: the micro-batch loss is total / count (window_mean needs a Trainer)
    module.window_mean = lambda total, count: total / count
    spent: dict[str, float] = defaultdict(float)
    last: dict[str, Any] = {}
    _clock_methods(module, device, spent, last)
    times, lengths = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer warns on every call
        for i in range(steps_n):
            if i == warmup_n:
                spent.clear()
            batch = move_data_to_device(next(loader), device)
            seconds = _step(module, optimizer, batch, i, device, spent)
            if i >= warmup_n:
                times.append(seconds)
                lengths.append(last["generation"].mask.sum(dim=1).float().mean().item())
    total = sum(times)
    prompts = datamodule.batch_size
    return {
        "bench": "grpo",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": cfg.model.get("name_or_path") or cfg.model.get("family"),
        "prompts_per_step": prompts,
        "num_generations": module.num_generations,
        "max_completion_length": module.max_completion_length,
        "mean_completion_length": round(statistics.mean(lengths), 2),
        "beta": module.beta,
        "timed_steps": len(times),
        "torch_threads": torch.get_num_threads(),
        "step_seconds": round(total / len(times), 4),
        "prompts_per_s": round(prompts * len(times) / total, 3),
        "completions_per_s": round(prompts * module.num_generations * len(times) / total, 3),
        "time_share": {
            phase: round(seconds / total, 4) for phase, seconds in sorted(spent.items()) if seconds
        },
    }
