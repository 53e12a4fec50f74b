"""Supervised fine-tuning: next-token cross-entropy on the answer tokens only."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medvqa.losses.answer_ce import answer_positions, answer_token_ce, closed_answer_weights, sample_weights
from medvqa.stages.base import VLMStage, model_inputs

log = logging.getLogger(__name__)


class SFTModule(VLMStage):
    """Labels are -100 everywhere but the answer and its end-of-turn token (see data/collate.py); the loss is
    the mean answer-token cross-entropy over the whole effective batch (see VLMStage.window_mean).

    `class_weights`: None, `auto` (inverse-frequency weights of the closed answers in the training split,
    e.g. yes/no imbalance) or an explicit `{answer: weight}`; each sample's answer tokens are weighted by
    its answer's weight (open answers: 1)."""

    def __init__(
        self, model, processor, optimizer, class_weights: str | dict[str, float] | None = None, **kwargs
    ):
        super().__init__(model, processor, optimizer, **kwargs)
        if isinstance(class_weights, str) and class_weights != "auto":
            raise ValueError(
                f"stage.class_weights={class_weights!r}; use null, auto or a mapping answer: weight"
            )
        self.class_weights = class_weights
        self.answer_weights: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.class_weights == "auto":
            train = self.trainer.datamodule.splits["train"]
            self.answer_weights = closed_answer_weights((s.answer, s.answer_type) for s in train)
            log.info(
                "closed-answer class weights from %d training samples: %s", len(train), self.answer_weights
            )
        elif stage == "fit" and isinstance(self.class_weights, dict):
            self.answer_weights = {str(k): float(v) for k, v in self.class_weights.items()}

    def answer_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed answer-token cross-entropy, answer-token count), class-weighted when configured."""
        inputs = model_inputs(batch)
        labels = inputs.pop("labels")
        positions = answer_positions(labels)  # logits only where an answer token is predicted
        logits = self.model(**inputs, logits_to_keep=positions).logits
        weights = None
        if self.answer_weights:
            meta = batch["meta"]
            weights = sample_weights(self.answer_weights, meta["answer"], meta["answer_type"], labels.device)
        return answer_token_ce(logits, labels[:, positions + 1], weights)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.empty_step(batch):
            return None
        total, count = self.answer_loss(batch)
        self.log("train/loss", total / count, prog_bar=True, batch_size=len(batch["meta"]["id"]))
        self.log_skipped(batch)
        return self.window_mean(total, count)
