"""Lightning's rich progress bar, showing the learning rate and throughput (samples/s) beside the loss, and
on a step budget (trainer.max_steps, max_epochs=-1) the step of max_steps where Lightning shows `Epoch 9/-2`."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from medvqa.callbacks.oom_guard import batch_size_of


def samples_in_batch(batch: Any) -> int:
    """Samples in a collated batch; the `batch_size_fn` for Lightning's ThroughputMonitor."""
    return batch_size_of(batch)


class ProgressBar(RichProgressBar):
    """`lr` is each parameter group's current rate (one number, or name=rate per discriminative group);
    `samples/s` is measured over the last `window` training batches (wall clock, data loading included)."""

    def __init__(self, window: int = 20, **kwargs):
        super().__init__(**kwargs)
        self._times: deque[tuple[float, int]] = deque(maxlen=window + 1)
        self._seen = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._times.clear()  # the first batch of an epoch waits for the loader: start the clock fresh
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += batch_size_of(batch)
        self._times.append((time.perf_counter(), self._seen))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._step_budget() and self.progress is not None and self.train_progress_bar_id is not None:
            description = self._get_train_description(trainer.current_epoch)
            self.progress.update(self.train_progress_bar_id, description=description)

    def _step_budget(self) -> bool:
        """Training ends at max_steps, not after a number of epochs (max_epochs -1 or None)."""
        return self.trainer.max_epochs in (None, -1) and self.trainer.max_steps > 0

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._step_budget():
            return super()._get_train_description(current_epoch)
        description = f"step {self.trainer.global_step}/{self.trainer.max_steps}"
        return f"{description:{len(self.validation_description)}}"  # as Lightning pads: no flicker

    def samples_per_second(self) -> float | None:
        if len(self._times) < 2:
            return None
        (t0, n0), (t1, n1) = self._times[0], self._times[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if trainer.optimizers:
            groups = trainer.optimizers[0].param_groups
            if len(groups) == 1:
                items["lr"] = f"{groups[0]['lr']:.2e}"
            else:
                items["lr"] = " ".join(f"{g.get('name', i)}={g['lr']:.1e}" for i, g in enumerate(groups))
        rate = self.samples_per_second()
        if rate is not None:
            items["samples/s"] = f"{rate:.1f}"
        return items
