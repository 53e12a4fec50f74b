"""Merging a run's LoRA / DoRA adapter into its base weights, and proving the merge kept the model's answers.

    from medvqa.inference.merge import answer_items, check_merge, merge_adapter

    before = answer_items(stage, batches)          # greedy answers in adapter mode
    merged = merge_adapter(peft_model)             # a plain transformers model (peft merge_and_unload)
    after = answer_items(stage_of(merged), batches)
    difference = check_merge(before, after)        # None, or the first item whose answer changed

A merge can change answers silently (a wrong scaling, a dtype round-trip, a layer peft does not merge):
the check compares the explicit greedy answers (VLMStage.generate_answers) item by item.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)
# module-name parts of the vision encoders of the supported families (Qwen2-VL / 2.5-VL `visual`,
# PaliGemma / SigLIP `vision_tower`, LLaVA-style `vision_model`), and of their projectors
VISION_PARTS = ("visual", "vision_tower", "vision_model", "multi_modal_projector")


@dataclass(frozen=True)
class Answer:
    """One held-out item and the greedy completion a model gave."""

    id: str
    question: str
    image: str
    answer: str


@dataclass(frozen=True)
class Difference:
    """The first item whose answer the merge changed, and how many of the checked items changed."""

    id: str
    question: str
    adapter_answer: str
    merged_answer: str
    n_different: int
    n_checked: int

    def __str__(self) -> str:
        return (
            f"{self.n_different} of {self.n_checked} checked answers changed; first: item {self.id!r}, "
            f"question {self.question!r}: adapter {self.adapter_answer!r}, merged {self.merged_answer!r}"
        )


def merge_adapter(model) -> torch.nn.Module:
    """The transformers model with its (active) peft adapter folded into the base weights
    (`merge_and_unload`: W + scaling * B @ A for LoRA, the DoRA magnitude too). The peft model is
    consumed: its base layers now hold the merged weights."""
    if not hasattr(model, "merge_and_unload"):
        raise ValueError(
            "the model has no peft adapter to merge (a peft=none run): export its weights as they are"
        )
    return model.merge_and_unload(progressbar=False, safe_merge=True)


def answer_items(stage, batches: Iterable[dict[str, Any]]) -> list[Answer]:
    """Each item's greedy completion from `stage.generate_answers` (the evaluation decoding config)."""
    out: list[Answer] = []
    for batch in batches:
        meta = batch["meta"]
        completions = stage.generate_answers(batch)
        out += [
            Answer(str(meta["id"][i]), meta["question"][i], str(meta["image"][i] or ""), c)
            for i, c in enumerate(completions)
        ]
    return out


@torch.no_grad()
def first_token_logprobs(model, batches: Iterable[dict[str, Any]]) -> list[torch.Tensor]:
    """Per batch, the log-probabilities of the first answer token (the last position of the left-padded
    prompts), (B, vocab) in float32 on the CPU: how far the merge moved the model, below what changes an
    answer."""
    from medvqa.stages.base import prompt_inputs

    return [torch.log_softmax(model(**prompt_inputs(b)).logits[:, -1].float(), -1).cpu() for b in batches]


def largest_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """The largest absolute log-probability change over every checked item and vocabulary entry."""
    return max((float((a - b).abs().max()) for a, b in zip(before, after, strict=True)), default=0.0)


def check_merge(adapter: list[Answer], merged: list[Answer]) -> Difference | None:
    """None when every merged answer equals the adapter-mode answer of the same item, else the first one
    that does not (in the checked order), with the count."""
    if [a.id for a in adapter] != [m.id for m in merged]:
        raise RuntimeError("the merged model answered other items than the adapter model")
    changed = [(a, m) for a, m in zip(adapter, merged, strict=True) if a.answer != m.answer]
    if not changed:
        return None
    a, m = changed[0]
    return Difference(a.id, a.question, a.answer, m.answer, len(changed), len(adapter))


def vision_adapter_modules(model) -> list[str]:
    """Names of the adapter-wrapped modules inside the vision tower or projector. A merged export carries
    their change; a server that applies the adapter itself (vLLM serves LoRA on the language model only)
    would drop it, so answers there would differ from the run's."""
    names = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and any(part in name.split(".") for part in VISION_PARTS):
            names.append(name.removeprefix("base_model.model."))  # the transformers model's own name
    return names
