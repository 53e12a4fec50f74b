"""Supervised fine-tuning: next-token cross-entropy on the answer tokens only."""

from __future__ import annotations

from typing import Any

import torch

from medvqa.stages.base import VLMStage, model_inputs


class SFTModule(VLMStage):
    """Labels are -100 everywhere but the answer and its end-of-turn token (see data/collate.py), so the
    model's own loss is the mean answer-token cross-entropy."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.model(**model_inputs(batch)).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["meta"]["id"]))
        self.log_skipped(batch)
        return loss
