"""Memory and system figures every N optimizer steps, to every logger that is on.

Lightning's DeviceStatsMonitor reports what the accelerator exposes (on CPU: machine-wide psutil figures)
and no peak; this logs what a researcher tuning batch size and precision reads: this process's CPU and
RAM, and the GPU's allocated / reserved / peak memory and utilisation.
"""

from __future__ import annotations

import contextlib
from typing import Any

import lightning as L
import psutil
import torch

GB = 1024**3


def system_stats(process: psutil.Process, device: torch.device | None = None) -> dict[str, float]:
    """`sys/*` figures: process RAM (GB, and % of the machine), process CPU % (since the last call, summed
    over cores), and for a CUDA device its allocated / reserved / peak (since the last call) memory in GB
    and utilisation % when NVML is there."""
    stats = {
        "sys/ram_gb": process.memory_info().rss / GB,
        "sys/ram_percent": process.memory_percent(),
        "sys/cpu_percent": process.cpu_percent(interval=None),
        "sys/machine_ram_percent": psutil.virtual_memory().percent,
    }
    if device is not None and device.type == "cuda":
        stats |= {
            "sys/gpu_allocated_gb": torch.cuda.memory_allocated(device) / GB,
            "sys/gpu_reserved_gb": torch.cuda.memory_reserved(device) / GB,
            "sys/gpu_peak_gb": torch.cuda.max_memory_allocated(device) / GB,
        }
        torch.cuda.reset_peak_memory_stats(device)
        # no NVML (pynvml) on this machine: leave utilisation out rather than guess
        with contextlib.suppress(Exception):
            stats["sys/gpu_utilization"] = float(torch.cuda.utilization(device))
    return stats


class MemoryMonitor(L.Callback):
    def __init__(self, every_n_steps: int = 20):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.memory_monitor.every_n_steps={every_n_steps}; use 1 or more")
        self.every_n_steps = every_n_steps
        self.process = psutil.Process()
        self.last: dict[str, float] = {}
        self._logged_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.process.cpu_percent(interval=None)  # starts the CPU-time window

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        step = trainer.global_step
        if step % self.every_n_steps or step == self._logged_step:  # mid-window batches share the step
            return
        self._logged_step = step
        self.last = system_stats(self.process, pl_module.device)
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=trainer.global_step)
