"""val/composite and early stopping / best checkpoint on it, with a module whose metrics are scripted."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from medvqa.callbacks.composite import CompositeMetric, composite

# per validation: closed_acc, loss -> composite = acc - 0.5 * loss
SCRIPT = [(0.50, 1.0), (0.70, 0.8), (0.60, 0.2), (0.65, 0.6), (0.90, 1.0), (0.95, 0.1)]
EXPECTED = [0.0, 0.3, 0.5, 0.35, 0.4, 0.9]  # worked by hand


class Scripted(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.i = 0

    def training_step(self, batch, batch_idx):
        return (self.w * batch).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        acc, loss = SCRIPT[self.i]
        self.log_dict({"val/closed_acc": acc, "val/loss": loss})
        self.i += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(1, 1), batch_size=1)


def test_composite_by_hand():
    assert (
        composite({"val/closed_acc": 0.7, "val/loss": 0.8}, {"closed_acc": 1.0, "loss": -0.5}, "val") == 0.3
    )
    with pytest.raises(KeyError, match=r"callbacks.composite.weights names \['f1'\], not logged on val"):
        composite({"val/loss": 1.0}, {"f1": 1.0}, "val")


def test_early_stopping_and_best_checkpoint_follow_the_composite(tmp_path):
    # EarlyStopping listed first on purpose: CompositeMetric must still run before it
    stop = EarlyStopping(monitor="val/composite", mode="max", patience=2)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/composite", mode="max", save_top_k=1)
    trainer = L.Trainer(max_epochs=20, callbacks=[stop, CompositeMetric({"closed_acc": 1.0, "loss": -0.5}), best],
                        logger=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    module = Scripted()
    trainer.fit(module)
    # best 0.5 at validation 3; 0.35 and 0.4 do not beat it: stop after validation 5 (0.9 never seen)
    assert module.i == 5
    assert float(best.best_model_score) == pytest.approx(0.5)
    assert float(stop.best_score) == pytest.approx(0.5)
    assert float(trainer.callback_metrics["val/composite"]) == pytest.approx(EXPECTED[4])
