"""Lightning's EarlyStopping, saying when and why it ended a run: one log line at the stop, and `stopped`
(what run_info.json records as `stopped_early`). Lightning's own stop is silent unless verbose, and then it
does not say at which step, nor that the run ended before its budget."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)


class EarlyStopping(LightningEarlyStopping):
    """`stopped`: None, or {step, epoch, max_steps, monitor, best, patience, min_delta, reason, message} of
    the check that stopped the run before trainer.max_steps (a stop on the budget's last step is no early stop)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stopped: dict[str, Any] | None = None

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        super()._run_early_stopping_check(trainer)
        if self.stopped is not None or self.stopping_reason == EarlyStoppingReason.NOT_STOPPED:
            return
        if 0 < trainer.max_steps <= trainer.global_step:
            return  # the run ends here anyway
        self.stopped = {
            "step": trainer.global_step, "epoch": trainer.current_epoch, "max_steps": trainer.max_steps,
            "monitor": self.monitor, "best": float(self.best_score), "patience": self.patience,
            "min_delta": abs(float(self.min_delta)), "reason": self.stopping_reason.name.lower(),
            "message": self.stopping_reason_message,
        }  # fmt: skip
        self._announce(self.stopped)

    @staticmethod
    @rank_zero_only
    def _announce(s: dict[str, Any]) -> None:
        budget = f"step {s['step']} of {s['max_steps']}" if s["max_steps"] > 0 else f"step {s['step']}"
        log.warning(
            "early stopping at %s (epoch %d): %s (%s); best %s %.4f, patience %d validations, min_delta %g "
            "(callbacks.early_stopping)", budget, s["epoch"], s["reason"].replace("_", " "), s["message"],
            s["monitor"], s["best"], s["patience"], s["min_delta"],
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # trainer.test(ckpt_path="best") restores callback states too, from a checkpoint before the stop
        self.stopped = state_dict.get("stopped") or self.stopped


def stopped_early(trainer: L.Trainer) -> dict[str, Any] | None:
    """What an EarlyStopping callback of `trainer` recorded when it ended the run early; None otherwise."""
    return next(
        (cb.stopped for cb in trainer.callbacks if isinstance(cb, EarlyStopping) and cb.stopped), None
    )
