"""Memory monitor to the loggers every N steps; progress bar shows loss, lr and samples/s, and logs plain lines
when stdout is not a terminal."""

import csv
import re
import sys

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
    bar = ProgressBar(plain=False)  # the rich bar (pytest's stdout is no terminal)
    t = trainer(max_steps=6, max_epochs=-1, callbacks=[bar], enable_progress_bar=True)
    t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 8))  # 4 batches per epoch: 2 epochs
    assert bar._get_train_description(t.current_epoch).strip() == "step 6/6"
    shown = [task.description.strip() for task in bar.progress.tasks]
    assert "step 6/6" in shown and not any("/-" in d for d in shown)
    epochs = trainer(
        max_steps=-1, max_epochs=2, callbacks=[ProgressBar(plain=False)], enable_progress_bar=True
    )
    epochs.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 4))
    assert (
        epochs.progress_bar_callback._get_train_description(1).strip() == "Epoch 1/1"
    )  # epoch budget as before


def test_progress_bar_is_plain_exactly_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert ProgressBar().plain and ProgressBar().is_disabled  # a log file: no live bar
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert not ProgressBar().plain and ProgressBar().is_enabled
    assert ProgressBar(plain=True).plain


def _lines(caplog, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(pattern, r.getMessage())]


def test_plain_progress_logs_step_rate_loss_lr_eta_every_n_steps_and_the_eval_phases(caplog):
    model, processor = tiny_lora()
    bar = ProgressBar(plain=True, log_every_n_steps=2, log_every_s=1e9)
    t = trainer(max_steps=6, max_epochs=-1, callbacks=[bar], enable_progress_bar=True, limit_val_batches=None,
                val_check_interval=3)  # fmt: skip
    with caplog.at_level("INFO", logger="medvqa"):
        t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 16), loader(processor, 4, 8))
        t.test(t.lightning_module, loader(processor, 4, 8))
    steps = _lines(caplog, r"^step \d")
    assert [int(re.match(r"step (\d+)/6", s).group(1)) for s in steps] == [1, 3, 5, 6]  # first, every 2, last
    assert re.fullmatch(
        r"step 3/6 \| [\d.]+ samples/s \| train/loss [\d.]+ \| lr [\d.e+-]+ \| ETA \d+:\d\d:\d\d", steps[1]
    )
    assert _lines(caplog, r"^training: step 0 of 6")
    assert _lines(caplog, r"^validating at step 3: 2 batches$") and _lines(
        caplog, r"^validating at step 6: 2 batches$"
    )
    assert len(_lines(caplog, r"^validation done in [\d.]+ s$")) == 2
    assert _lines(caplog, r"^testing: 2 batches$") and _lines(caplog, r"^testing done in")


def test_plain_progress_also_logs_every_log_every_s_seconds(caplog):
    model, processor = tiny_lora()
    bar = ProgressBar(plain=True, log_every_n_steps=1000, log_every_s=0)
    t = trainer(max_steps=4, callbacks=[bar], enable_progress_bar=True)
    with caplog.at_level("INFO", logger="medvqa"):
        t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 8))
    assert [s.split(" |")[0] for s in _lines(caplog, r"^step \d")] == [
        "step 1/4",
        "step 2/4",
        "step 3/4",
        "step 4/4",
    ]
