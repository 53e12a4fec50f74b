"""What the SFT, DPO and GRPO stages truly share: the optimizer set-up, evaluation by generation with the
VQA scoring protocol, and checkpoints that hold only the trainable (adapter) weights."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from transformers import GenerationConfig

from medvqa.data.collate import is_empty
from medvqa.data.errors import DataError
from medvqa.eval.metrics import VQAScores, score_item
from medvqa.models.grad_checkpointing import enable_gradient_checkpointing
from medvqa.models.param_groups import describe_groups, group_parameters

log = logging.getLogger(__name__)
NOT_MODEL_INPUTS = ("meta", "n_skipped")
# Evaluation decodes greedily with nothing else switched on; `stage.eval_generation` changes single keys.
EVAL_GENERATION = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                   "length_penalty": 1.0, "temperature": None, "top_k": None, "top_p": None, "use_cache": True}  # fmt: skip


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
        param_groups: dict[str, dict[str, Any]] | None = None,
        gradient_checkpointing: bool = False,
        lr: float | None = None,
        eval_generation: dict[str, Any] | None = None,
    ):
        """`lr` is the config's `stage.lr`, which `stage.optimizer.lr` interpolates: the optimizer partial
        already carries it, so it is only recorded here (hparams) for sweeps and reports.
        `eval_generation`: GenerationConfig keys that override EVAL_GENERATION (greedy) for evaluation."""
        super().__init__()
        self.save_hyperparameters(ignore=["model", "processor", "optimizer", "scheduler"])
        self.model, self.processor = model, processor
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.max_new_tokens = max_new_tokens
        self.eval_generation = EVAL_GENERATION | dict(eval_generation or {})
        unknown = sorted(set(self.eval_generation) - set(GenerationConfig().to_dict()))
        if unknown:
            raise ValueError(f"stage.eval_generation has keys GenerationConfig does not know: {unknown}")
        self.param_groups, self.gradient_checkpointing = param_groups, gradient_checkpointing
        self._window_items: torch.Tensor | None = None  # loss items (answer tokens, pairs) in this window
        self._window_ref: float | None = None  # the first micro-batch's item count: the loss scale
        self._window_calls = 0  # window_mean calls in this window (an upper bound on its micro-batches)
        self.scores = torch.nn.ModuleDict({"val": VQAScores(), "test": VQAScores()})
        self.predictions: list[dict[str, Any]] = []
        # the split the test loop scores and keeps prediction rows of (medvqa/eval/evaluation.py score_split)
        self.test_split = "test"
        self.strict_loading = False  # checkpoints hold only trainable weights (see on_save_checkpoint)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)

    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps submodule modes: switch on
        # dropout (e.g. lora_dropout) explicitly; evaluation loops switch it off and back.
        self.model.train()

    # -- optimisation --------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = group_parameters(named, self.param_groups)
        if self.param_groups:
            log.info("optimizer parameter groups:\n%s", describe_groups(groups))
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- loss scaling under gradient accumulation ----------------------------------------------------
    def window_mean(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """The value for `training_step` to return when its loss is `total / count` (e.g. summed answer-token
        cross-entropy over answer tokens). The optimizer step then sees sum(total) / sum(count) over the whole
        accumulation window, not the mean of per-micro-batch means, so 1 x 16 and 4 x 4 give the same update
        even when micro-batches hold different numbers of answer tokens.

        How: every micro-batch's loss is divided by one constant (the first micro-batch's count, which keeps
        the loss near its usual scale for fp16 loss scaling), Lightning divides it by accumulate_grad_batches
        and sums the gradients; `on_before_optimizer_step`, which Lightning runs after unscaling and before
        clipping, multiplies them by k * ref / window_count. Clipping therefore sees the final gradient.
        """
        count = count.detach().float()
        if self._window_items is None:
            self._window_items = torch.zeros((), device=count.device)
            # across devices the constant must be the same everywhere: the raw sum (1.0) is
            self._window_ref = max(float(count), 1.0) if self.trainer.world_size == 1 else 1.0
        self._window_items = self._window_items + count
        self._window_calls += 1
        return total / self._window_ref

    def reset_window(self) -> None:
        """Forget the window's item count (after its gradients were dropped, e.g. by the OOM guard)."""
        self._window_items, self._window_ref, self._window_calls = None, None, 0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._window_items is None:  # the stage returned a plain mean: Lightning's 1/k is already right
            return
        if self.trainer.world_size == self.trainer.accumulate_grad_batches == self._window_calls == 1:
            self.reset_window()  # one whole micro-batch: the factor below is exactly 1, skip the rescale
            return
        items = self._window_items
        if self.trainer.world_size > 1:  # DDP averages gradients over ranks: count items over all of them
            items = self.trainer.strategy.reduce(items, reduce_op="sum") / self.trainer.world_size
        factor = self.trainer.accumulate_grad_batches * self._window_ref / items.clamp_min(1e-12)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(factor.to(p.grad.dtype))
        self.reset_window()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Frozen base weights are reloaded from the hub/path, never copied into every checkpoint."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {
            k: v for k, v in state.items() if k in trainable or k.startswith("scores.")
        }

    # -- evaluation by generation --------------------------------------------------------------------
    def eval_generation_config(self) -> GenerationConfig:
        """The complete evaluation decoding config, built from scratch: EVAL_GENERATION with the stage's
        overrides, max_new_tokens, and the end/pad tokens of the model and tokenizer (nothing else of the
        checkpoint's generation_config: its sampling, penalties or n-gram bans would change the scores)."""
        own = getattr(_generating_model(self.model), "generation_config", None)
        return GenerationConfig(**(self.eval_generation | {
            "max_new_tokens": self.max_new_tokens,
            "eos_token_id": getattr(own, "eos_token_id", None) or self.processor.tokenizer.eos_token_id,
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }))  # fmt: skip

    @torch.no_grad()
    def generate_output(self, batch: dict[str, Any], **kwargs):
        """`model.generate` on the batch's prompts under `eval_generation_config()` (keys in `kwargs` update
        it, e.g. `output_logits=True, return_dict_in_generate=True`): prompt + new tokens, or generate's
        output object when `return_dict_in_generate`."""
        inputs = prompt_inputs(batch)
        config = self.eval_generation_config()
        config.update(**kwargs)
        # generate() fills every key left unset (None) from the model's own generation_config: swap that for
        # ours during the call, so the checkpoint's settings cannot apply silently
        inner = _generating_model(self.model)
        saved, inner.generation_config = inner.generation_config, config
        try:
            return self.model.generate(**inputs, generation_config=config)
        finally:
            inner.generation_config = saved

    def decode(self, new_tokens: torch.Tensor) -> list[str]:
        """The completions (special tokens dropped, stripped) of generated tokens (B, T) after the prompt."""
        texts = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def generate_answers(self, batch: dict[str, Any], **kwargs) -> list[str]:
        """The greedy completion of every prompt in the batch, as evaluation scores them."""
        out = self.generate_output(batch, **kwargs)
        return self.decode(out[:, batch["prompt_input_ids"].shape[1] :])

    def _evaluate(self, batch: dict[str, Any], split: str, keep_rows: bool = False) -> None:
        """Score a batch into `split_scores(split)`; with `keep_rows` (the test loop) also append one
        prediction row per question to `self.predictions`, with the generation's `mean_logprob` and, for a
        polar question, its `option_logprobs` (the inputs of confidence, calibration and the guard)."""
        self.split_scores(split).skip(batch.get("n_skipped", 0))
        if is_empty(batch):  # every image unreadable (data.on_bad_sample=skip): nothing to score
            return
        from medvqa.inference.scoring import confidence_fields, scored_generation  # (it imports this module)

        loss = self.model(**model_inputs(batch)).loss
        self.log(f"{split}/loss", loss, batch_size=len(batch["meta"]["id"]), sync_dist=True)
        # the test loop scores its one generation for confidence too (medvqa/inference/scoring.py)
        scored = scored_generation(self, batch, self.answer_from) if keep_rows else None
        completions, meta = scored["completions"] if scored else self.generate_answers(batch), batch["meta"]
        preds = [self.answer_from(c) for c in completions]
        self.split_scores(split).update(preds, meta["answer"], meta["answer_type"], meta["question"])
        if keep_rows:
            for i, (pred, completion) in enumerate(zip(preds, completions, strict=True)):
                row = prediction_row(meta, i)
                row |= {"completion": completion} if completion != pred else {}
                row |= confidence_fields(scored, i)
                self.predictions.append(
                    row
                    | {
                        "prediction": pred,
                        "scores": score_item(pred, row["answer"], row["answer_type"], row["question"]),
                    }
                )

    def answer_from(self, completion: str) -> str:
        """The answer scored from a generated completion (stages that ask for a structured reply parse it)."""
        return self.parse_answer(completion)

    @staticmethod
    def parse_answer(completion: str) -> str:
        """`answer_from` without a module: what inference (medvqa/inference/) applies to a completion."""
        return completion

    def split_scores(self, split: str) -> VQAScores:
        """The accumulator of `split`: val's for val, test's for test and train (which only the test loop of
        `python -m medvqa.evaluate split=train` scores; an nn.ModuleDict cannot hold a key named `train`)."""
        return self.scores["val" if split == "val" else "test"]

    @classmethod
    def prompt_instruction(cls, stage_cfg: Mapping[str, Any]) -> str | None:
        """The instruction this stage, configured by `stage_cfg` (the run's `stage:`), appends to every
        question, in training and evaluation alike (None: the question as it is)."""
        return None

    def _log_scores(self, split: str) -> None:
        values = self.split_scores(split).compute()
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, sync_dist=True)
        self.split_scores(split).reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.test_split, keep_rows=True)

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_split)
        if self.trainer.world_size > 1:
            self.predictions = gather_predictions(self.predictions, self.trainer.world_size)

    def log_skipped(self, batch: dict[str, Any]) -> None:
        if batch.get("n_skipped"):
            self.log("train/skipped", float(batch["n_skipped"]), reduce_fx="sum", on_step=False, on_epoch=True,
                     batch_size=1)  # fmt: skip

    def empty_step(self, batch: dict[str, Any]) -> bool:
        """True when every image of this training micro-batch was unreadable (data.on_bad_sample=skip): the
        stage's training_step then returns None, which Lightning takes as no backward for this micro-batch.
        Its accumulation window's gradient is then the mean over the others (window_mean counts only the
        micro-batches that ran); a window with none leaves the weights unchanged (no gradients to step on)."""
        if not is_empty(batch):
            return False
        self.log_skipped(batch)
        if self.trainer.world_size > 1:  # Lightning cannot skip a step on one rank of several
            raise DataError(
                f"every image of a training micro-batch was unreadable ({batch['n_skipped']} rows, "
                "data.on_bad_sample=skip), and with several devices a step cannot be skipped: remove or fix the "
                "unreadable files (the run's skip counts), or raise data.batch_size"
            )
        return True


def _generating_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (whose generate reads the inner generation_config)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


ROW_FIELDS = ("id", "question", "answer", "answer_type")  # always in a prediction row
# written when the sample has them: what breakdowns group by and where a report finds the picture
# patient_id / image_id: the clusters of every interval (medvqa/eval/stats.py row_clusters)
ROW_OPTIONAL = ("question_type", "modality", "plane", "organ", "source", "image", "image_row", "image_member",
                "image_id", "patient_id")  # fmt: skip


def prediction_row(meta: dict[str, list], i: int) -> dict[str, Any]:
    """Row i of a batch's `meta` as a predictions.jsonl row (before the prediction and scores are added)."""
    row = {k: meta[k][i] for k in ROW_FIELDS}
    return row | {k: meta[k][i] for k in ROW_OPTIONAL if meta.get(k) and meta[k][i] not in ("", None)}


def gather_predictions(rows: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    """Every rank's test rows on every rank, in the test split's order. Lightning gathers tensors only
    (strategy.all_gather), so the rows (strings) go through torch.distributed's object gather. The
    datamodule's UnrepeatedDistributedSampler gives rank r the questions r, r + W, r + 2W, ...: taking
    one row from each rank in turn restores the single-process order."""
    per_rank: list[list[dict[str, Any]]] = [[] for _ in range(world_size)]
    torch.distributed.all_gather_object(per_rank, rows)
    longest = max(len(r) for r in per_rank)
    return [r[i] for i in range(longest) for r in per_rank if i < len(r)]
