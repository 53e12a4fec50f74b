"""`val/composite` (and `test/composite`): a weighted sum of logged metrics, for early stopping and
best-checkpoint selection on several metrics at once.

    callbacks.composite.weights: {closed_acc: 1.0, token_f1: 0.5, loss: -0.2}

Weights apply to `split/name`; give a negative weight to a metric where lower is better (loss), so the
composite is always "higher is better" (monitor it with mode max). A weight naming a metric that was not
logged is an error, not a silent zero.
"""

from __future__ import annotations

import lightning as L
import torch


def composite(metrics: dict[str, float], weights: dict[str, float], split: str) -> float:
    """sum_i w_i * metrics[f"{split}/{name_i}"].

    >>> composite({"val/closed_acc": 0.8, "val/loss": 2.0}, {"closed_acc": 1.0, "loss": -0.1}, "val")
    0.6
    """
    missing = [k for k in weights if f"{split}/{k}" not in metrics]
    if missing:
        raise KeyError(
            f"callbacks.composite.weights names {missing}, not logged on {split}; "
            f"logged: {sorted(k.split('/', 1)[1] for k in metrics if k.startswith(split + '/'))}"
        )
    return round(sum(w * float(metrics[f"{split}/{k}"]) for k, w in weights.items()), 12)


class CompositeMetric(L.Callback):
    def __init__(self, weights: dict[str, float], name: str = "composite"):
        if not weights:
            raise ValueError(
                "callbacks.composite.weights is empty; give {metric: weight}, e.g. {closed_acc: 1.0}"
            )
        self.weights, self.name = {str(k): float(v) for k, v in weights.items()}, name

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # EarlyStopping reads callback_metrics in its own on_validation_end: run before it (ModelCheckpoint
        # is always moved last by Lightning)
        trainer.callbacks.remove(self)
        trainer.callbacks.insert(0, self)

    def _add(self, trainer: L.Trainer, split: str) -> None:
        if trainer.sanity_checking:
            return
        key = f"{split}/{self.name}"
        value = composite(trainer.callback_metrics, self.weights, split)
        # after the stage logged its epoch metrics, self.log is closed: write where the monitors read
        trainer.callback_metrics[key] = torch.tensor(value)
        for logger in trainer.loggers:
            logger.log_metrics({key: value}, step=trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._add(trainer, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._add(trainer, "test")
