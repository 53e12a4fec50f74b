"""Discriminative learning rates: trainable parameters sorted into named optimizer groups by module.

`stage.param_groups` is an ordered mapping `name -> {lr, weight_decay, match}`; a parameter joins the first
group (in the order written) whose `match` regex is found in its name. Known group names carry a default
`match` that covers Qwen2-VL, Qwen2.5-VL and PaliGemma (through peft's `base_model.model.` prefix too):

    lora       LoRA / DoRA adapter weights, wherever they sit
    projector  the vision-to-text bridge: Qwen's `visual.merger`, PaliGemma's `multi_modal_projector`
    vision     the vision tower: Qwen's `visual.*`, PaliGemma's `vision_tower`
    language   the language model, its embeddings and the output head

Put `lora` first to give every adapter one rate, or after `vision` to let adapters in the vision tower
follow the tower's rate. Trainable parameters matched by no group go to `other`, which takes the
optimizer's own lr and weight_decay. Each group carries its `name`, which Lightning's LearningRateMonitor
uses as the logged key (`lr-AdamW/vision`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

DEFAULT_MATCH = {
    "lora": r"\.lora_",
    "projector": r"visual\.merger\.|multi_modal_projector\.",
    "vision": r"visual\.(?!merger\.)|vision_tower\.",
    "language": r"language_model\.|lm_head\.|embed_tokens\.",
}
GROUP_KEYS = {"lr", "weight_decay", "match", "betas", "eps", "momentum"}


def group_parameters(
    named_params: Iterable[tuple[str, torch.nn.Parameter]], groups: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Optimizer param groups (dicts with `params` and `name`, plus lr/weight_decay where configured).
    `groups=None` gives one group with every parameter. Empty groups are left out."""
    named_params = list(named_params)
    if not groups:
        return [{"name": "all", "params": [p for _, p in named_params]}]
    patterns = {name: _pattern(name, spec or {}) for name, spec in groups.items()}
    members: dict[str, list[torch.nn.Parameter]] = {name: [] for name in [*groups, "other"]}
    for pname, p in named_params:
        group = next((g for g, pat in patterns.items() if pat.search(pname)), "other")
        members[group].append(p)
    out = []
    for name, params in members.items():
        if params:
            options = {k: v for k, v in (groups.get(name) or {}).items() if k != "match"}
            out.append({"name": name, "params": params, **options})
    return out


def _pattern(name: str, spec: dict[str, Any]) -> re.Pattern:
    unknown = set(spec) - GROUP_KEYS
    if unknown:
        raise ValueError(
            f"stage.param_groups.{name} has unknown keys {sorted(unknown)}; allowed: {sorted(GROUP_KEYS)}"
        )
    match = spec.get("match") or DEFAULT_MATCH.get(name)
    if match is None:
        raise ValueError(
            f"stage.param_groups.{name} needs a `match` regex (a parameter-name pattern); "
            f"only {sorted(DEFAULT_MATCH)} have a default"
        )
    return re.compile(match)


def describe_groups(groups: list[dict[str, Any]]) -> str:
    """One line per group: name, tensors, parameters, lr, weight decay (defaults shown as '-')."""
    lines = [f"{'group':<10} {'tensors':>7} {'params':>12} {'lr':>10} {'wd':>8}"]
    for g in groups:
        n = sum(p.numel() for p in g["params"])
        lines.append(
            f"{g['name']:<10} {len(g['params']):>7} {n:>12,} {g.get('lr', '-')!s:>10} {g.get('weight_decay', '-')!s:>8}"
        )
    return "\n".join(lines)
