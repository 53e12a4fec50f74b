"""Pieces of GRPO's dynamic sampling (stage.dynamic_sampling, DAPO) and of the flat-group warning, kept out
of medvqa/stages/grpo.py so that its training_step reads as the algorithm.

A flat group is a prompt whose completions all scored the same: its advantages are 0 and it gives no
gradient. Rows are a rollout's N = P * G rows, a prompt's G rows adjacent (medvqa/stages/grpo.py Rollout).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch


def group_rows(groups: torch.Tensor, num_generations: int) -> torch.Tensor:
    """(P,) bool of chosen groups -> (n * G,) long: the row indices of those groups, in order."""
    index = groups.nonzero().flatten()
    return (index.unsqueeze(1) * num_generations + torch.arange(num_generations)).flatten()


def select_rows(inputs: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The model inputs of the given rows (each row's image with it). Qwen-VL processors flatten all images'
    patches into one `pixel_values` (sum of patches, D), split per image by `image_grid_thw`."""
    n = inputs["input_ids"].shape[0]
    out = {}
    for key, value in inputs.items():
        if key == "pixel_values" and "image_grid_thw" in inputs and value.shape[0] != n:
            per_image = value.split(inputs["image_grid_thw"].prod(-1).tolist())
            out[key] = torch.cat([per_image[i] for i in rows.tolist()])
        elif torch.is_tensor(value) and value.shape[0] == n:
            out[key] = value[rows.to(value.device)]
        else:
            raise ValueError(f"cannot select rows of model input {key!r} of shape {tuple(value.shape)}")
    return out


def splice(old: torch.Tensor, rows: torch.Tensor, new: torch.Tensor, pad: float) -> torch.Tensor:
    """old (N, ...) with rows `rows` replaced by new (n, ...); (N, L) token tensors of different lengths are
    right-padded with `pad` to the longer one first (pad: the pad token for ids, 0 for masks)."""
    if old.dim() == 2 and old.shape[1] != new.shape[1]:
        width = max(old.shape[1], new.shape[1])
        old = torch.nn.functional.pad(old, (0, width - old.shape[1]), value=pad)
        new = torch.nn.functional.pad(new, (0, width - new.shape[1]), value=pad)
    out = old.clone()
    out[rows.to(old.device)] = new.to(old.device, old.dtype)
    return out


class FlatGroupWatch:
    """Says when the share of flat groups has averaged above `threshold` over the last `window` rollouts:
    once per stretch (again only after the average has come back down)."""

    def __init__(self, threshold: float = 0.9, window: int = 10):
        self.threshold, self.recent, self.warned = threshold, deque(maxlen=window), False

    def update(self, frac: float) -> float | None:
        """Record one rollout's share; returns the window's mean when a warning is due, else None."""
        self.recent.append(frac)
        mean = sum(self.recent) / len(self.recent)
        if mean <= self.threshold:
            self.warned = False  # the stretch is over: warn again if it comes back
            return None
        if self.warned or len(self.recent) < self.recent.maxlen:
            return None
        self.warned = True
        return mean


def sampling_logits(logits: torch.Tensor, sampling: dict[str, Any]) -> torch.Tensor:
    """(N, L, V) logits -> the logits of the distribution `generate(**sampling)` samples from: divided by the
    temperature, the suppressed tokens at -inf, truncated by top_k / top_p (transformers' own warpers, so the
    truncation is generate's), so that log_softmax of them gives each sampled token the probability it was
    drawn with. GRPO's ratio and KL then use the sampler's distribution rather than the full one, which a
    truncated sampler would bias (stage.top_p < 1 or stage.top_k > 0)."""
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    out = logits / sampling["temperature"]
    suppress = sampling.get("suppress_tokens") or []
    if suppress:
        out = out.clone()
        out[..., suppress] = -float("inf")
    top_k, top_p = sampling.get("top_k") or 0, sampling.get("top_p")
    if top_k or (top_p is not None and top_p < 1.0):
        flat = out.reshape(-1, out.shape[-1])
        if top_k:
            flat = TopKLogitsWarper(top_k)(None, flat)
        if top_p is not None and top_p < 1.0:
            flat = TopPLogitsWarper(top_p)(None, flat)
        out = flat.reshape(out.shape)
    return out
