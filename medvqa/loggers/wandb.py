"""Weights & Biases logger: offline unless WANDB_MODE=online, and no patient data unless asked.

What leaves the machine when synced: metrics, the stage/data hyper-parameters (paths and knobs, no
records) and wandb's system metrics. Console capture is off (warnings can quote record ids and file
names) and code/git capture is off. Predictions (question, reference answer, model answer) are logged as
a table only with `logger.wandb.log_samples=true`; images are never sent.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

SAMPLE_COLUMNS = ("id", "question", "answer", "prediction", "answer_type")


class WandbLogger(LightningWandbLogger):
    def __init__(
        self,
        project: str = "medvqa",
        name: str | None = None,
        tags: list[str] | None = None,
        save_dir: str = ".",
        log_samples: bool = False,
        mode: str | None = None,
        **kwargs: Any,
    ):
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        settings = {"console": "off", "save_code": False, "disable_git": True} | dict(
            kwargs.pop("settings", None) or {}
        )
        super().__init__(project=project, name=name, tags=list(tags or []), save_dir=save_dir, log_model=False,
                         mode=mode, settings=settings, **kwargs)  # fmt: skip
        self.log_samples = log_samples

    def log_predictions(self, rows: list[dict[str, Any]], key: str = "test/predictions") -> bool:
        """Log prediction rows as a table when log_samples is on; returns whether anything was sent."""
        if not self.log_samples or not rows:
            return False
        self.log_table(
            key, columns=list(SAMPLE_COLUMNS), data=[[r.get(c) for c in SAMPLE_COLUMNS] for r in rows]
        )
        return True
