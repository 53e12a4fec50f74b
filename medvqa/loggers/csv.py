"""Lightning's CSV logger, continued on resume instead of cleared.

Lightning's writer deletes `metrics.csv` when its folder is not empty, so a run resumed with
`ckpt_path=last` kept only the steps after the kill. Here, when resuming (`ckpt_path` set), the existing file
is kept and continued: rows the killed run logged after its checkpoint are dropped when the resumed run logs
its first row (it redoes those steps), and new columns (test/ metrics, a callback added) rewrite the header
as Lightning does. Rows are flushed at every checkpoint, so a kill -9 loses none logged before it.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuedWriter(ExperimentWriter):
    """Appends to an existing metrics.csv; the first logged step marks where the resumed run starts."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._resumed_at: int | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def _check_log_dir_exists(self) -> None:
        pass  # Lightning deletes metrics.csv here

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._resumed_at is None and step is not None:
            self._resumed_at = step
            self._drop_rows_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        """Rows at `step` and after are the killed run's steps past its checkpoint, logged again now."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if not r.get("step") or int(r["step"]) < step]
        if len(kept) < len(rows):
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)


class CSVLogger(LightningCSVLogger):
    """`ckpt_path`: the checkpoint this run resumes from (conf: `${ckpt_path}`); when set, an existing
    metrics.csv is continued. Other arguments are Lightning's."""

    def __init__(
        self,
        save_dir: str,
        name: str = "csv",
        version: str | int | None = "",
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        ckpt_path: str | None = None,
    ):
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        self.resuming = bool(ckpt_path)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer = _ContinuedWriter if self.resuming else ExperimentWriter
            self._experiment = writer(log_dir=self.log_dir)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()  # everything up to a checkpoint is on disk before a kill -9 can lose it
