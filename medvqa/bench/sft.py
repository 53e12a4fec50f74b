"""`python -m medvqa.bench sft [steps=25] [warmup=5] [rounds=15] [overrides="a=b c=d"]`

In one process and on the same model, batches and optimizer, it times:
- `lightning`: SFTModule.training_step driven by a Lightning Trainer (hooks, logging, clipping, scheduler);
- `bare`: the same forward / backward / clip / step / zero_grad in a plain PyTorch loop;
- `collate`: reading + decoding images and the collator alone, as a DataLoader worker would.
Many short rounds alternate between the two loops so machine noise hits both; each round's ratio
compares two neighbouring runs and the median over rounds is reported (on 2 shared cores one 20-step
run varies by up to 20%). The first round warms allocator and caches and is shown but not counted.
Printed as JSON: samples/s for each and the ratios the foundation issue sets targets for
(lightning step time / bare step time <= 1.05, collation >= 5x the training sample rate).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from medvqa.run import build, compose_config


class _StepClock(L.Callback):
    """Wall time from the first timed batch's start to the last batch's end (data fetch included)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


class _Prepared(L.LightningDataModule):
    """The same collated batches every round, moved to the device by the real datamodule's hook."""

    def __init__(self, batches: list[dict[str, Any]], datamodule: L.LightningDataModule):
        super().__init__()
        self.batches, self.datamodule = batches, datamodule

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None, shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return self.datamodule.transfer_batch_to_device(batch, device, dataloader_idx)


def _config(overrides: str):
    return compose_config(overrides.split(), output_dir=tempfile.mkdtemp(prefix="medvqa-bench-"))


def _batches(datamodule, n: int) -> list[dict[str, Any]]:
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    return [next(loader) for _ in range(n)]


def _collate_rate(datamodule, n_batches: int) -> float:
    dataset, collate = datamodule.dataset("train"), datamodule.collator()
    size, started = datamodule.batch_size, time.perf_counter()
    for b in range(n_batches):
        collate([dataset[(b * size + i) % len(dataset)] for i in range(size)])
    return n_batches * size / (time.perf_counter() - started)


def _lightning_round(cfg, module, batches, warmup: int, datamodule) -> float:
    clock = _StepClock(warmup)
    trainer = instantiate(cfg.trainer, max_steps=len(batches), val_check_interval=None, limit_val_batches=0,
                          callbacks=[clock], logger=L.pytorch.loggers.CSVLogger(cfg.paths.output_dir),
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=_Prepared(batches, datamodule))
    return (clock.end - clock.start) / (len(batches) - warmup)


def _bare_round(cfg, module, batches, warmup: int) -> float:
    params = module.trainable_parameters()
    optimizer = module.optimizer_factory(params=params)
    scheduler = (
        module.scheduler_factory(optimizer, num_training_steps=len(batches))
        if module.scheduler_factory
        else None
    )
    clip = cfg.trainer.get("gradient_clip_val")
    module.model.train()
    for i, batch in enumerate(batches):
        if i == warmup:
            started = time.perf_counter()
        total, count = module.answer_loss(batch)  # the stage's own loss, so only the loop differs
        (total / count).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
    return (time.perf_counter() - started) / (len(batches) - warmup)


def run(steps: str = "25", warmup: str = "5", rounds: str = "15", overrides: str = "") -> dict[str, Any]:
    steps_n, warmup_n, rounds_n = int(steps), int(warmup), int(rounds)
    cfg = _config(overrides)
    L.seed_everything(cfg.seed, verbose=False)
    _, datamodule, module = build(cfg)
    batches = _batches(datamodule, steps_n)
    bs = datamodule.batch_size
    lightning_t, bare_t, collate_r = [], [], []
    for _ in range(rounds_n):
        bare_t.append(_bare_round(cfg, module, batches, warmup_n))
        lightning_t.append(_lightning_round(cfg, module, batches, warmup_n, datamodule))
        collate_r.append(_collate_rate(datamodule, max(steps_n // 2, 8)))
    counted = slice(1, None) if rounds_n > 1 else slice(None)  # round 1 warms up
    rounds_ = list(zip(lightning_t, bare_t, collate_r, strict=True))[counted]
    return {
        "bench": "sft",
        "model": cfg.model.get("name_or_path") or cfg.model.get("family"),
        "batch_size": bs,
        "timed_steps_per_round": steps_n - warmup_n,
        "rounds": rounds_n,
        "torch_threads": torch.get_num_threads(),
        "lightning_samples_per_s": round(bs / statistics.median(r[0] for r in rounds_), 2),
        "bare_samples_per_s": round(bs / statistics.median(r[1] for r in rounds_), 2),
        "collate_samples_per_s": round(statistics.median(r[2] for r in rounds_), 2),
        "step_time_ratio_lightning_over_bare": round(statistics.median(t / b for t, b, _ in rounds_), 4),
        "collate_over_train_rate": round(statistics.median(c * t / bs for t, _, c in rounds_), 2),
        "targets": {"step_time_ratio_max": 1.05, "collate_over_train_min": 5.0},
        "rounds_detail": {
            "lightning_step_s": [round(t, 4) for t in lightning_t],
            "bare_step_s": [round(t, 4) for t in bare_t],
            "collate_samples_per_s": [round(c, 1) for c in collate_r],
        },
    }
