"""Validate (and so checkpoint) at the end of every fit, not only every trainer.val_check_interval steps.

Without it a run shorter than the interval (trainer.max_steps=20, val_check_interval=500) never validates:
no val metrics, no best checkpoint, and the test falls back to the last weights; and a longer run's steps
after its last validation are neither scored nor in last.ckpt. Lightning validates a batch when the trainer
was asked to stop (as EarlyStopping does), so asking it to stop on the budget's last batch is enough; a
last batch that is a validation batch anyway is validated once.
"""

from __future__ import annotations

import lightning as L


class FinalValidation(L.Callback):
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        if self._last_batch(trainer):
            trainer.should_stop = True

    @staticmethod
    def _last_batch(trainer: L.Trainer) -> bool:
        """This batch's optimizer step ends the fit: max_steps reached, or the last batch of the last epoch."""
        loop = trainer.fit_loop
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            return True
        last_epoch = loop.max_epochs not in (None, -1) and trainer.current_epoch >= loop.max_epochs - 1
        return last_epoch and loop.epoch_loop.batch_progress.is_last_batch
