"""Batch-size finder that keeps the effective batch: Lightning's BatchSizeFinder, then accumulation.

Lightning searches the largest micro-batch that trains without running out of memory (binsearch, with a
safety `margin` taken off what it found). The effective batch (micro-batch x accumulation x devices) is a
training hyper-parameter, though, and must not change because memory allows more: so the search stops at
twice the per-device target (the target itself is then tried), the micro-batch is capped at the target,
and `trainer.accumulate_grad_batches` is set so micro x accumulation x devices is the target. With
`exact=true` the micro-batch is rounded down to a divisor of the per-device target, so the effective batch
is exactly the target, not approximately.

The target is `target_effective_batch` or, when null, data.batch_size x trainer.accumulate_grad_batches x
devices as configured. The result is printed, logged (`batch_size_finder/*`) and kept in checkpoints: a
resumed run reuses it instead of searching again.
"""

from __future__ import annotations

import logging
import math

import lightning as L
from lightning.pytorch.callbacks import BatchSizeFinder
from lightning.pytorch.utilities.parsing import lightning_getattr, lightning_setattr

log = logging.getLogger(__name__)


def plan_accumulation(found: int, target: int, devices: int = 1, exact: bool = True) -> tuple[int, int]:
    """(micro_batch, accumulation) for a largest safe micro-batch `found` and an effective-batch `target`.

    >>> plan_accumulation(6, 16)          # 6 fits: 4 x 4 gives exactly 16
    (4, 4)
    >>> plan_accumulation(6, 16, exact=False)   # 6 x 3 = 18, closest from above
    (6, 3)
    >>> plan_accumulation(64, 16, devices=2)    # each device needs 8
    (8, 1)
    """
    per_device = max(1, math.ceil(target / devices))
    micro = max(1, min(found, per_device))
    if exact:
        micro = max(d for d in range(1, micro + 1) if per_device % d == 0)
    return micro, math.ceil(per_device / micro)


class EffectiveBatchSizeFinder(BatchSizeFinder):
    def __init__(
        self,
        target_effective_batch: int | None = None,
        exact: bool = True,
        mode: str = "binsearch",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        margin: float = 0.1,
        max_val: int = 8192,
        batch_arg_name: str = "batch_size",
    ):
        super().__init__(mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val)
        self.target_effective_batch, self.exact = target_effective_batch, exact
        self.result: dict[str, int] = {}

    def state_dict(self) -> dict[str, int]:
        return dict(self.result)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.result = dict(state)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.result:  # resumed: the search already ran in this run
            self._apply(trainer, pl_module, self.result["micro_batch"], self.result["accumulation"])
            self._report(trainer, "reused from the checkpoint")
            return
        devices = trainer.world_size
        configured = lightning_getattr(pl_module, self._batch_arg_name)
        target = self.target_effective_batch or configured * trainer.accumulate_grad_batches * devices
        per_device = math.ceil(target / devices)
        user_max, self._max_val = self._max_val, min(self._max_val, 2 * per_device)
        try:
            self.scale_batch_size(trainer, pl_module)
        finally:
            self._max_val = user_max
        found = int(self.optimal_batch_size)
        micro, accumulation = plan_accumulation(found, target, devices, self.exact)
        self._apply(trainer, pl_module, micro, accumulation)
        self.result = {"found": found, "micro_batch": micro, "accumulation": accumulation, "devices": devices,
                       "effective_batch": micro * accumulation * devices, "target": target}  # fmt: skip
        cap = 2 * per_device
        # Lightning stops at the cap without trying it, then takes the margin off
        how = (f"no OOM below the search cap {cap}; {found} is the cap less the {self._margin:.0%} margin"
               if found >= int(cap * (1 - self._margin)) else f"after a {self._margin:.0%} safety margin")  # fmt: skip
        self._report(trainer, how)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The search is for the training micro-batch only; evaluation uses data.eval_batch_size."""

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """As on_validation_start."""

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """As on_validation_start."""

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, micro: int, accumulation: int) -> None:
        lightning_setattr(pl_module, self._batch_arg_name, micro)
        trainer.accumulate_grad_batches = accumulation
        if hasattr(pl_module, "reset_window"):  # trial steps may have left a half-counted window
            pl_module.reset_window()
        loop = trainer.fit_loop
        loop._combined_loader = None  # rebuild the train loader at the new micro-batch
        loop.setup_data()

    def _report(self, trainer: L.Trainer, how: str) -> None:
        r = self.result
        line = (f"batch size finder: found batch size {r['found']} ({how}); micro-batch {r['micro_batch']} x "
                f"accumulation {r['accumulation']} x {r['devices']} device(s) = effective batch "
                f"{r['effective_batch']} (target {r['target']})")  # fmt: skip
        print(line, flush=True)
        log.info(line)
        for logger in trainer.loggers:
            logger.log_hyperparams({f"batch_size_finder/{k}": v for k, v in r.items()})
            logger.log_metrics(
                {f"batch_size_finder/{k}": float(v) for k, v in r.items()}, step=trainer.global_step
            )


def accumulation_for(effective: int, micro: int, devices: int = 1) -> int:
    """trainer.accumulate_grad_batches for `effective_batch_size` at micro-batch `micro` on `devices`.

    >>> accumulation_for(16, 4)
    4
    """
    if effective % (micro * devices):
        raise ValueError(
            f"effective_batch_size={effective} is not a multiple of data.batch_size={micro} x {devices} device(s); "
            "pick a micro-batch that divides it (or add callbacks=[...,batch_size_finder] to choose one)"
        )
    return effective // (micro * devices)
