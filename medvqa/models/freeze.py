"""Which parts of a vision-language model train: `model.freeze` and the adapters' reach.

A parameter belongs to one part by its name, with the patterns medvqa/models/param_groups.py already uses
for Qwen2-VL, Qwen2.5-VL and PaliGemma (through peft's `base_model.model.` prefix too):

    vision     the vision tower: Qwen's `model.visual.blocks...`, PaliGemma's `model.vision_tower...`
    projector  the vision-to-text bridge: Qwen's `model.visual.merger...`, PaliGemma's `multi_modal_projector`
    language   the language model (`model.language_model...`), its embeddings and the output head

`model.freeze=[vision, projector]` with `peft=none` fine-tunes the language model only (ms-swift's
`freeze_vit` + `freeze_aligner`); under an adapter it freezes the adapter weights inside those parts.

vLLM serves LoRA on the language model only, so adapters on the vision tower or projector are silently
dropped by such a server: `vision_adapter_modules` lists them, and training warns at its start and when it
writes adapter/. conf/peft/lora.yaml's default `target_modules` (LANGUAGE_LINEAR) leaves them out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from medvqa.models.param_groups import DEFAULT_MATCH

log = logging.getLogger(__name__)
PARTS = ("vision", "projector", "language")
# the language model's linear layers in all three families (conf/peft/lora.yaml's default target_modules;
# peft full-matches a string against each module name)
LANGUAGE_LINEAR = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
_PATTERNS = {part: re.compile(DEFAULT_MATCH[part]) for part in PARTS}
VLLM_LIMITATION = (
    "vLLM serves LoRA on the language model only: a vLLM server loading adapter/ ignores these, so its answers "
    "differ from training's; merge them into the weights (python -m medvqa.export) or train with "
    "peft.target_modules on the language model (conf/peft/lora.yaml's default)"
)


def part_of(name: str) -> str | None:
    """The part a parameter or module name belongs to (projector before vision: Qwen's merger sits inside
    `visual.`), or None for names outside all three."""
    return next((part for part in ("projector", "vision", "language") if _PATTERNS[part].search(name)), None)


def check_parts(freeze: Iterable[str] | None) -> tuple[str, ...]:
    """`model.freeze` as a tuple, refusing names other than vision, projector, language."""
    parts = tuple(freeze or ())
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(
            f"model.freeze={list(parts)}: unknown part(s) {unknown}; choose from {', '.join(PARTS)}"
        )
    return parts


def freeze_parts(model, parts: Iterable[str]) -> int:
    """Switch off requires_grad for every parameter in `parts`; returns how many tensors were frozen.
    Refuses to leave nothing trainable (an optimizer with no parameters fails later, less clearly)."""
    parts = check_parts(parts)
    if not parts:
        return 0
    frozen = 0
    for name, p in model.named_parameters():
        if p.requires_grad and part_of(name) in parts:
            p.requires_grad_(False)
            frozen += 1
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"model.freeze={list(parts)} leaves no parameter to train; freeze fewer parts")
    log.info(
        "model.freeze=%s: %d tensors frozen, %s parameters still train", list(parts), frozen, f"{trainable:,}"
    )
    return frozen


def vision_adapter_modules(model) -> list[str]:
    """Names of the modules carrying an adapter (LoRA / DoRA) in the vision tower or projector: the ones a
    vLLM server ignores. Empty for a model without adapters."""
    if not hasattr(model, "peft_config"):
        return []
    return [name for name, module in model.named_modules()
            if hasattr(module, "lora_A") and part_of(name) in ("vision", "projector")]  # fmt: skip


def from_checkpoint(model) -> bool:
    """Whether the model was loaded from a hub id or folder (one a user may serve), not built in memory
    (the tiny models: config._name_or_path is empty)."""
    return bool(getattr(getattr(model, "config", None), "_name_or_path", ""))


def warn_vision_adapters(model, when: str, checkpoints_only: bool = True) -> list[str]:
    """Log one warning line when the adapter covers vision-tower or projector modules; returns them.
    With `checkpoints_only`, only for a model loaded from a checkpoint (an export is likely), so the tiny
    default run, whose adapter covers its random vision tower on purpose, stays quiet."""
    names = vision_adapter_modules(model)
    if names and (from_checkpoint(model) or not checkpoints_only):
        log.warning("%s: the adapter covers %d vision-tower/projector modules (e.g. %s). %s",
                    when, len(names), names[0], VLLM_LIMITATION)  # fmt: skip
    return names
