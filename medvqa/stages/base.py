"""What the SFT, DPO and GRPO stages truly share: the optimizer set-up, evaluation by generation with the
VQA scoring protocol, and checkpoints that hold only the trainable (adapter) weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from medvqa.eval.metrics import VQAScores, score_item

NOT_MODEL_INPUTS = ("meta", "n_skipped")


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The full (prompt + answer) sequence and the image tensors, as the model's forward takes them."""
    return {k: v for k, v in batch.items() if k not in NOT_MODEL_INPUTS and not k.startswith("prompt_")}


def prompt_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The left-padded prompts (for generate) with the same image tensors."""
    full_tokens = {k[len("prompt_") :] for k in batch if k.startswith("prompt_")} | {"labels"}
    inputs = {k[len("prompt_") :]: v for k, v in batch.items() if k.startswith("prompt_")}
    return inputs | {k: v for k, v in model_inputs(batch).items() if k not in full_tokens}


class VLMStage(L.LightningModule):
    """Base for stage modules. Subclasses write `training_step` as their algorithm."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        max_new_tokens: int = 16,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "processor", "optimizer", "scheduler"])
        self.model, self.processor = model, processor
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.max_new_tokens = max_new_tokens
        self.scores = torch.nn.ModuleDict({"val": VQAScores(), "test": VQAScores()})
        self.predictions: list[dict[str, Any]] = []
        self.strict_loading = False  # checkpoints hold only trainable weights (see on_save_checkpoint)

    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps submodule modes: switch on
        # dropout (e.g. lora_dropout) explicitly; evaluation loops switch it off and back.
        self.model.train()

    # -- optimisation --------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Frozen base weights are reloaded from the hub/path, never copied into every checkpoint."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {
            k: v for k, v in state.items() if k in trainable or k.startswith("scores.")
        }

    # -- evaluation by generation --------------------------------------------------------------------
    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any], **kwargs) -> list[str]:
        inputs = prompt_inputs(batch)
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False} | kwargs
        out = self.model.generate(**inputs, **kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [
            t.strip() for t in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ]

    def _evaluate(self, batch: dict[str, Any], split: str) -> None:
        loss = self.model(**model_inputs(batch)).loss
        self.log(f"{split}/loss", loss, batch_size=len(batch["meta"]["id"]), sync_dist=True)
        preds, meta = self.generate_answers(batch), batch["meta"]
        self.scores[split].update(preds, meta["answer"], meta["answer_type"])
        if split == "test":
            for i, pred in enumerate(preds):
                row = {k: meta[k][i] for k in ("id", "question", "answer", "answer_type")}
                self.predictions.append(
                    row | {"prediction": pred, "scores": score_item(pred, row["answer"], row["answer_type"])}
                )

    def _log_scores(self, split: str) -> None:
        values = self.scores[split].compute()
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, sync_dist=True)
        self.scores[split].reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def log_skipped(self, batch: dict[str, Any]) -> None:
        if batch.get("n_skipped"):
            self.log(
                "train/skipped", float(batch["n_skipped"]), reduce_fx="sum", on_step=False, on_epoch=True
            )
