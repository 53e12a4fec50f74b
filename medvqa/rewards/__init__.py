"""Reward functions for RL stages, one plain signature: `fn(completions: list[str], **fields) -> list[float]`.

`fields` are the samples' labels (answer, answer_type, question_type, plane, modality, organ, caption),
each a list aligned with `completions`. A reward returns NaN where it does not apply to a sample.
`conf/stage/grpo.yaml: reward_weights` picks rewards by name; `reward_options` passes keyword options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from medvqa.rewards.caption import CaptionAlignment
from medvqa.rewards.match import answer_match, format_reward, modality_match, plane_match

RewardFn = Callable[..., list[float]]
# name -> a reward function, or a class whose instances are one (built once with its options)
REWARDS: dict[str, Any] = {
    "format": format_reward,
    "answer_match": answer_match,
    "plane_match": plane_match,
    "modality_match": modality_match,
    "caption_alignment": CaptionAlignment,
}


class WeightedRewards:
    """The rewards with non-zero weight; `score` gives each raw reward, `total` their weighted sum."""

    def __init__(self, weights: dict[str, float], options: dict[str, dict] | None = None):
        options = dict(options or {})
        for name in [*weights, *options]:
            if name not in REWARDS:
                raise ValueError(f"stage.reward_weights / reward_options name an unknown reward {name!r}; "
                                 f"known rewards: {', '.join(REWARDS)}")  # fmt: skip
        self.names = [n for n, w in weights.items() if w]
        self.weights = torch.tensor([float(weights[n]) for n in self.names])
        self.fns: list[RewardFn] = [_build(REWARDS[n], options.get(n) or {}) for n in self.names]
        if not self.names:
            raise ValueError(
                "stage.reward_weights gives every reward weight 0; GRPO needs at least one reward"
            )

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def score(self, completions: list[str], fields: dict[str, list]) -> torch.Tensor:
        """(N, K) raw rewards, one column per reward in `names`; NaN where a reward does not apply."""
        columns = []
        for name, fn in zip(self.names, self.fns, strict=True):
            values = fn(completions, **fields)
            if len(values) != len(completions):
                raise RuntimeError(
                    f"reward {name} returned {len(values)} values for {len(completions)} completions"
                )
            columns.append(torch.tensor(values, dtype=torch.float32))
        return torch.stack(columns, dim=1)

    def total(self, raw: torch.Tensor) -> torch.Tensor:
        """(N, K) -> (N,): sum of weight * reward over the rewards that apply (NaN counts as 0)."""
        return torch.nansum(raw * self.weights, dim=1)


def _build(factory: Any, options: dict) -> RewardFn:
    return factory(**options) if inspect.isclass(factory) else partial(factory, **options)
