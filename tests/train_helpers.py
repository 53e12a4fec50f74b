"""Small in-memory training set-ups shared by the stage and callback tests (tiny model, real collator)."""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from torch.utils.data import DataLoader

from medvqa.data.collate import VQACollator
from medvqa.data.sample import VQASample
from medvqa.models.tiny import build_tiny
from medvqa.stages.sft import SFTModule

# answers of very different token counts, so a per-micro-batch mean differs from the window mean
ANSWERS = [
    "yes",
    "no",
    "left lower lobe of the lung with effusion",
    "12",
    "ct",
    "no",
    "mass in the liver",
    "yes",
]


def items(n: int = 16) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "sample": VQASample(id=str(i), image="x", question=f"Is there a lesion {i}?", answer=ANSWERS[i % 8],
                                answer_type="closed" if ANSWERS[i % 8] in ("yes", "no") else "open"),
            "image": Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)),
        }
        for i in range(n)
    ]  # fmt: skip


def tiny_lora(family: str = "qwen2_vl"):
    """A fresh tiny model (the session fixture's would be mutated by peft) with non-zero LoRA A and B."""
    vlm = build_tiny(family, hidden_size=32, num_layers=1, vision_depth=1, image_size=56)
    torch.manual_seed(0)
    model = get_peft_model(vlm.model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    return model, vlm.processor


def loader(processor, batch_size: int, n: int = 16) -> DataLoader:
    return DataLoader(items(n), batch_size=batch_size, shuffle=False, collate_fn=VQACollator(processor))


def sft_module(model, processor, lr: float = 1.0, **kwargs) -> SFTModule:
    return SFTModule(model, processor, optimizer=partial(torch.optim.SGD, lr=lr), **kwargs)


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                    deterministic=True, num_sanity_val_steps=0)  # fmt: skip
    return L.Trainer(**(defaults | kwargs))


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class KillAt(L.Callback):
    """Dies after optimizer step `step`, the way a killed job does: no checkpoint is written on the way out."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError(f"killed at step {trainer.global_step}")


def tiny_run(data_dir, *extra: str) -> list[str]:
    """Overrides for a whole `medvqa.run` in seconds: tiny model, few samples, two epochs of 6 batches."""
    return [
        f"paths.data_dir={data_dir}", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.reader.image_size=56", "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1",
        "model.image_size=56", "data.batch_size=4", "data.eval_batch_size=16",
        "data.limit={train:24,val:8,test:8}", "stage.max_new_tokens=3", "stage.scheduler.num_warmup_steps=2",
        "trainer.max_steps=10", "trainer.val_check_interval=4", "eval_untrained=false",
        "callbacks.progress_bar=null", *extra,
    ]  # fmt: skip


class ItemsDataModule(L.LightningDataModule):
    """In-memory items with a tunable `batch_size` (what BatchSizeFinder searches)."""

    def __init__(self, processor, n: int = 32, batch_size: int = 2):
        super().__init__()
        self.processor, self.n, self.batch_size = processor, n, batch_size
        self.seen_batch_sizes: list[int] = []

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            items(self.n), batch_size=self.batch_size, shuffle=False, collate_fn=VQACollator(self.processor)
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(items(2), batch_size=2, collate_fn=VQACollator(self.processor))


class RecordBatches(L.Callback):
    """Writes the sample ids of every training batch, in order, to `path` (JSON) when fit ends."""

    def __init__(self, path: str):
        self.path, self.ids = path, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids.append(list(batch["meta"]["id"]))

    def on_train_end(self, trainer, pl_module) -> None:
        import json

        with open(self.path, "w") as f:
            json.dump(self.ids, f)


class HangAt(L.Callback):
    """After optimizer step `step`, writes `marker` and waits to be killed (a subprocess test's kill -9 lands
    at a known step, not a race with the run's end)."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time
        from pathlib import Path

        if trainer.global_step >= self.step:
            Path(self.marker).write_text(str(trainer.global_step))
            while True:
                time.sleep(1)
