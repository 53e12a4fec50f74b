"""Memory monitor to the loggers every N steps; progress bar shows loss, lr and samples/s."""

import csv

import psutil
import pytest
from lightning.pytorch.loggers import CSVLogger
from train_helpers import loader, sft_module, tiny_lora, trainer

from medvqa.callbacks.memory_monitor import MemoryMonitor
from medvqa.callbacks.progress import ProgressBar


def test_memory_monitor_logs_every_n_steps(tmp_path):
    model, processor = tiny_lora()
    monitor, bar = MemoryMonitor(every_n_steps=2), ProgressBar(window=5)
    t = trainer(max_steps=4, logger=CSVLogger(tmp_path, name="", version=""), callbacks=[monitor, bar],
                enable_progress_bar=True)  # fmt: skip
    t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 8))
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("sys/ram_gb")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    rss = psutil.Process().memory_info().rss / 1024**3
    assert float(rows[-1]["sys/ram_gb"]) == pytest.approx(rss, rel=0.5)
    assert not any(k.startswith("sys/gpu") and v for k, v in rows[-1].items())  # CPU run: no GPU figures
    shown = bar.get_metrics(t, t.lightning_module)
    assert "train/loss" in shown and shown["lr"] == "1.00e-01"
    assert float(shown["samples/s"]) > 0


def test_progress_bar_shows_steps_of_max_steps_on_a_step_budget():
    """max_epochs=-1 with max_steps: Lightning's description is `Epoch 1/-2`; the bar shows the step."""
    model, processor = tiny_lora()
    bar = ProgressBar()
    t = trainer(max_steps=6, max_epochs=-1, callbacks=[bar], enable_progress_bar=True)
    t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 8))  # 4 batches per epoch: 2 epochs
    assert bar._get_train_description(t.current_epoch).strip() == "step 6/6"
    shown = [task.description.strip() for task in bar.progress.tasks]
    assert "step 6/6" in shown and not any("/-" in d for d in shown)
    epochs = trainer(max_steps=-1, max_epochs=2, callbacks=[ProgressBar()], enable_progress_bar=True)
    epochs.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 4))
    assert (
        epochs.progress_bar_callback._get_train_description(1).strip() == "Epoch 1/1"
    )  # epoch budget as before
