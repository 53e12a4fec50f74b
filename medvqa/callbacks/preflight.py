"""The pre-flight check before the first training step (`callbacks.preflight`, on by default).

At fit start, after the stage has set up its data (GRPO's answer-format instruction, DPO's pairs) and
before any batch is drawn:

1. every training sample's exact token count (medvqa/data/preflight.py) against `data.max_length` (null:
   the model's max positions): over-long samples are refused with a DataError naming the first, or with
   `data.on_bad_sample=skip` left out of the split and counted (run_info.json `skipped_while_reading`);
2. one printed line: the memory estimate by part (medvqa/models/memory.py) against this device, and the
   knob to turn when it will not fit;
3. a warning when the adapter covers vision-tower modules, which a vLLM server ignores.

`self.budget` and `self.estimate` keep the figures (the bench reads them).
"""

from __future__ import annotations

import logging

import lightning as L

from medvqa.data.errors import DataError
from medvqa.data.preflight import Budget, TokenCounter, enforce, model_max_length
from medvqa.models.freeze import warn_vision_adapters
from medvqa.models.memory import device_memory, estimate_memory, fix_for, memory_line, vision_cache_bytes

log = logging.getLogger(__name__)


class Preflight(L.Callback):
    def __init__(self, memory: bool = True):
        self.memory = memory
        self.budget: Budget | None = None
        self.estimate: dict[str, int] | None = None
        self.line = ""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "splits") or "train" not in datamodule.splits:
            return  # a plain loader (tests): nothing to measure
        model = pl_module.model
        self.budget = self.check_lengths(datamodule, pl_module)
        warn_vision_adapters(model, "training start")
        if self.memory:
            self.estimate, self.line = self.memory_estimate(trainer, pl_module, datamodule)
            if trainer.is_global_zero:
                log.info(self.line)  # on the console and in the run's log

    def check_lengths(self, datamodule, pl_module) -> Budget:
        hp = datamodule.hparams
        train = datamodule.splits["train"]
        counter = TokenCounter(datamodule.collator(), hp.max_image_side, hp.window,
                               getattr(pl_module, "max_completion_length", None))  # fmt: skip
        budget = counter.measure(train)
        self.answer_len = max(counter.answer_tokens([s.answer for s in train]), default=0)
        limit = hp.get("max_length") or model_max_length(pl_module.model)
        before = datamodule.bad.total
        if limit:
            datamodule.splits["train"] = enforce(train, budget, int(limit), datamodule.bad)
        kept = len(datamodule.splits["train"])
        if not kept:
            raise DataError(f"data.max_length={limit}: no training sample is that short; raise it")
        log.info("pre-flight: %d training samples measured in %.2f s: longest %d tokens (%d image tokens), "
                 "data.max_length=%s, %d over it skipped", len(train), budget.seconds, budget.longest,
                 budget.most_image_tokens, limit, datamodule.bad.total - before)  # fmt: skip
        return budget.within(limit) if limit else budget  # what will train: the memory estimate's shape

    def memory_estimate(self, trainer, pl_module, datamodule) -> tuple[dict[str, int], str]:
        model = pl_module.model
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        name = type(optimizer).__name__ if optimizer is not None else "AdamW"
        momentum = bool(optimizer and any(g.get("momentum") for g in optimizer.param_groups))
        image_processor = getattr(datamodule.processor, "image_processor", None)
        merge = getattr(image_processor, "merge_size", 1) or 1
        checkpointing = bool(getattr(pl_module, "gradient_checkpointing", False))
        parts = estimate_memory(
            model, micro_batch=datamodule.batch_size, seq_len=self.budget.longest, answer_len=self.answer_len,
            image_patches=self.budget.most_image_tokens * merge**2,
            generations=getattr(pl_module, "num_generations", 1), precision=str(trainer.precision),
            gradient_checkpointing=checkpointing, optimizer=name, momentum=momentum,
            vision_cache=vision_cache_bytes(model, len({s.image_key for s in datamodule.splits["train"]}),
                                            self.budget.most_image_tokens, str(trainer.precision)),
        )  # fmt: skip
        available, where = device_memory(pl_module.device)
        image_share = self.budget.most_image_tokens / max(self.budget.longest, 1)
        quantized = bool(getattr(getattr(model, "config", None), "quantization_config", None))
        fix = fix_for(parts, hasattr(model, "peft_config"), quantized, str(trainer.precision), checkpointing,
                      image_share)  # fmt: skip
        return parts, memory_line(parts, available, where, fix)
