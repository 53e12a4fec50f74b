"""Lightning's rich progress bar, showing the learning rate and throughput (samples/s) beside the loss, and
on a step budget (trainer.max_steps, max_epochs=-1) the step of max_steps where Lightning shows `Epoch 9/-2`.

When stdout is not a terminal (a SLURM job's log file, `> run.log`, CI) a live bar writes nothing until the
end, so the bar logs plain lines instead: one every `log_every_n_steps` optimizer steps or `log_every_s`
seconds, whichever comes first (and after the first step), with step, samples/s, loss, lr and ETA; and a line
when validation or testing starts and ends, and every `log_every_s` seconds while it runs."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from medvqa.callbacks.oom_guard import batch_size_of

log = logging.getLogger("medvqa")


def samples_in_batch(batch: Any) -> int:
    """Samples in a collated batch; the `batch_size_fn` for Lightning's ThroughputMonitor."""
    return batch_size_of(batch)


class ProgressBar(RichProgressBar):
    """`lr` is each parameter group's current rate (one number, or name=rate per discriminative group);
    `samples/s` is measured over the last `window` training batches (wall clock, data loading included).
    `plain`: log lines instead of drawing a bar; None decides by whether stdout is a terminal."""

    def __init__(self, window: int = 20, log_every_n_steps: int = 50, log_every_s: float = 60.0,
                 plain: bool | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self._times: deque[tuple[float, int]] = deque(maxlen=window + 1)
        self._seen = 0
        self.log_every_n_steps, self.log_every_s = log_every_n_steps, log_every_s
        self.plain = not sys.stdout.isatty() if plain is None else plain
        self._logged_step, self._logged_at, self._start = -1, 0.0, (0.0, 0)  # (time, step) of fit start
        self._phase_start = 0.0
        if self.plain:
            super().disable()

    def enable(self) -> None:  # Lightning re-enables the bar after sanity checks; plain mode stays plain
        if not self.plain:
            super().enable()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._times.clear()  # the first batch of an epoch waits for the loader: start the clock fresh
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start, self._logged_step = (time.perf_counter(), trainer.global_step), trainer.global_step
        if self.plain and trainer.is_global_zero:
            log.info("training: step %d of %d (%d train batches per epoch)", trainer.global_step,
                     self._total_steps(), trainer.num_training_batches)  # fmt: skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._seen += batch_size_of(batch)
        self._times.append((time.perf_counter(), self._seen))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.plain and trainer.is_global_zero:
            self._log_step(trainer, pl_module)
        if self._step_budget() and self.progress is not None and self.train_progress_bar_id is not None:
            description = self._get_train_description(trainer.current_epoch)
            self.progress.update(self.train_progress_bar_id, description=description)

    def _total_steps(self) -> int:
        return (
            self.trainer.max_steps
            if self.trainer.max_steps > 0
            else int(self.trainer.estimated_stepping_batches)
        )

    def _log_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One line per log_every_n_steps steps or log_every_s seconds, and after the first step."""
        step, now = trainer.global_step, time.perf_counter()
        first = self._logged_step == self._start[1] and step > self._logged_step
        due = step - self._logged_step >= self.log_every_n_steps or now - self._logged_at >= self.log_every_s
        due = due or step == self._total_steps()  # and the last step
        if step == self._logged_step or not (first or due):
            return
        self._logged_step, self._logged_at = step, now
        total, (t0, s0) = self._total_steps(), self._start
        eta = timedelta(seconds=round((now - t0) / (step - s0) * (total - step))) if step > s0 else "?"
        shown = {
            k: v for k, v in self.get_metrics(trainer, pl_module).items() if k not in ("lr", "samples/s")
        }
        loss = " ".join(f"{k} {_fmt(v)}" for k, v in shown.items() if "loss" in k)
        rate = self.samples_per_second()
        lr = self.get_metrics(trainer, pl_module).get("lr", "-")
        log.info("step %d/%d | %s samples/s | %s | lr %s | ETA %s", step, total,
                 "-" if rate is None else f"{rate:.1f}", loss or "loss -", lr, eta)  # fmt: skip

    # -- validation / test in plain mode: what the silent minutes are ------------------------------
    def _phase(self, trainer: L.Trainer, what: str, batches) -> None:
        if self.plain and trainer.is_global_zero and not trainer.sanity_checking:
            self._phase_start = self._logged_at = time.perf_counter()
            log.info("%s: %d batches", what, sum(batches))

    def _phase_end(self, trainer: L.Trainer, what: str) -> None:
        if self.plain and trainer.is_global_zero and not trainer.sanity_checking:
            log.info("%s done in %.1f s", what, time.perf_counter() - self._phase_start)

    def _phase_batch(self, trainer: L.Trainer, what: str, batch_idx: int, batches) -> None:
        now = time.perf_counter()
        if self.plain and trainer.is_global_zero and now - self._logged_at >= self.log_every_s:
            self._logged_at = now
            log.info("%s: batch %d of %d", what, batch_idx + 1, sum(batches))

    def on_validation_start(self, trainer, pl_module) -> None:
        super().on_validation_start(trainer, pl_module)
        self._phase(trainer, f"validating at step {trainer.global_step}", trainer.num_val_batches)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._phase_batch(trainer, "validating", batch_idx, trainer.num_val_batches)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._phase_end(trainer, "validation")

    def on_test_start(self, trainer, pl_module) -> None:
        super().on_test_start(trainer, pl_module)
        self._phase(trainer, "testing", trainer.num_test_batches)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._phase_batch(trainer, "testing", batch_idx, trainer.num_test_batches)

    def on_test_end(self, trainer, pl_module) -> None:
        super().on_test_end(trainer, pl_module)
        self._phase_end(trainer, "testing")

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


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
