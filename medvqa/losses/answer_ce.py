"""Answer-token cross-entropy as a (sum, count) pair, and class weights for closed answers.

Returning the sum and the count instead of their ratio is what lets the stage divide by the number of
answer tokens in the whole accumulation window (see VLMStage.window_mean), so an update does not depend
on how the effective batch was split into micro-batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from medvqa.answers import normalize

IGNORE_INDEX = -100


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """(K,) positions whose logits predict a supervised token in some row: p such that labels[:, p + 1] is
    not IGNORE_INDEX. Passed as the model's `logits_to_keep`, so the vocabulary projection runs over the
    answer positions only, not over the hundreds of image tokens in front of them."""
    supervised = (labels[:, 1:] != IGNORE_INDEX).any(dim=0)
    return supervised.nonzero().squeeze(-1)


def answer_token_ce(
    logits: torch.Tensor, targets: torch.Tensor, sample_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of `logits` (B, K, V) against `targets` (B, K), IGNORE_INDEX where unsupervised, with
    optional per-sample weights (B,). Returns (sum of w_b * ce over supervised tokens, sum of w_b over them):
    two scalars whose ratio is the (weighted) mean answer-token loss; with no weights the ratio equals the
    model's own mean loss."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    mask = (targets != IGNORE_INDEX).to(ce.dtype)
    if sample_weights is not None:
        mask = mask * sample_weights.to(ce.dtype)[:, None]
    return (ce * mask).sum(), mask.sum()


def closed_answer_weights(answers: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Inverse-frequency ("balanced") weights for closed answers: w_c = N / (C * n_c) over the N closed
    items with C distinct normalised answers, so the weights average to 1 over closed items and the loss
    keeps its scale. `answers` yields (answer, answer_type). Open answers are not weighted (weight 1)."""
    counts = Counter(normalize(a) for a, kind in answers if kind == "closed")
    total, classes = sum(counts.values()), len(counts)
    return {a: total / (classes * n) for a, n in sorted(counts.items())}


def sample_weights(
    weights: dict[str, float], answers: Sequence[str], answer_types: Sequence[str], device=None
) -> torch.Tensor:
    """(B,) weights for a batch: the class weight of each closed answer, 1.0 for open or unseen answers."""
    values = [
        weights.get(normalize(a), 1.0) if t == "closed" else 1.0
        for a, t in zip(answers, answer_types, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float32, device=device)
