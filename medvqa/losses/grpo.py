"""Group relative policy optimisation: advantages, clipped policy-ratio objective, k3 KL, loss aggregation.

Notation: P prompts, G completions per prompt (N = P * G rows, a prompt's G rows adjacent), L the padded
completion length. Log-probs are per completion token, (N, L); `mask` (N, L) is 1 on real completion
tokens (up to and including the end token) and 0 on padding.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "dapo", "bnpo", "dr_grpo")


def group_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    scale: str = "group",
    eps: float = 1e-4,
    batch_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """rewards (N,) -> advantages (N,): each reward minus its group's mean, divided by

    - `group`: the group's standard deviation (GRPO), - `batch`: the whole batch's standard deviation,
    `batch_std` (a scalar; the stage passes the std over every rank's rewards, `std_from_sums`), else
    these N rewards' own, - `none`: nothing (Dr. GRPO: std scaling over-weights groups that are nearly all
    right or all wrong). Standard deviations are unbiased (n - 1); `eps` keeps a group with equal rewards
    at exactly 0, not NaN.
    """
    if scale not in SCALES:
        raise ValueError(f"stage.scale_rewards={scale!r}; choose one of {', '.join(SCALES)}")
    if num_generations < 2 or rewards.numel() % num_generations:
        raise ValueError(
            f"{rewards.numel()} rewards do not form groups of stage.num_generations={num_generations} (>= 2)"
        )
    groups = rewards.float().view(-1, num_generations)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        std = std_from_sums(reward_sums(rewards)) if batch_std is None else batch_std
        centred = centred / (std.to(centred) + eps)
    return centred.view(-1)


def reward_sums(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (N,) -> (3,) float64 (count, sum, sum of squares): summed over ranks (one all-reduce, any
    N per rank) they give the whole batch's std through `std_from_sums`."""
    r = rewards.detach().double().reshape(-1)
    return torch.stack([r.new_tensor(float(r.numel())), r.sum(), (r * r).sum()])


def std_from_sums(sums: torch.Tensor) -> torch.Tensor:
    """(count, sum, sum of squares) (3,) -> the unbiased std (), float32; 0 for fewer than two rewards."""
    n, total, squares = sums.double().unbind()
    var = (squares - total * total / n.clamp(min=1)) / (n - 1).clamp(min=1)
    return var.clamp(min=0).sqrt().float()


def zero_std_groups(rewards: torch.Tensor, num_generations: int, tol: float = 1e-6) -> torch.Tensor:
    """rewards (N,) -> (N / G,) bool: groups whose completions all scored the same (zero advantage, no
    gradient)."""
    groups = rewards.float().view(-1, num_generations)
    return (groups.max(dim=1).values - groups.min(dim=1).values) <= tol


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate exp(d) - d - 1 with d = ref - policy: (N, L) -> (N, L).

    Unbiased for samples drawn from the policy, never negative, exactly 0 where the two agree."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_objective(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token loss -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) with r = exp(logp - old_logp).

    logp, old_logp (N, L); advantages (N,). Returns the loss (N, L) and two bool masks (N, L): tokens whose
    ratio is clipped from below (r < 1 - eps_low with A < 0) and from above (r > 1 + eps_high with A > 0);
    on those tokens the gradient is zero.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    loss = -torch.min(ratio * adv, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * adv)
    return loss, (ratio < 1 - epsilon_low) & (adv < 0), (ratio > 1 + epsilon_high) & (adv > 0)


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce a per-token loss (N, L) over real tokens `mask` (N, L) to (total, count): the micro-batch's
    loss is total / count, and over a gradient-accumulation window the loss is sum(total) / sum(count)
    (VLMStage.window_mean), which is where the variants differ:

    - `grpo`: (sum of per-sequence token means, N): mean over sequences (long answers count less per token);
    - `dapo`: (sum over real tokens, their count): token mean over the whole window (every token the same);
    - `bnpo`: (this micro-batch's token mean, 1): mean of the micro-batches' token means;
    - `dr_grpo`: (sum over real tokens, N * max_completion_length): a constant normaliser, no length bias.
    """
    mask = mask.to(per_token.dtype)
    total = per_token * mask
    if loss_type == "grpo":
        return (total.sum(1) / mask.sum(1).clamp(min=1)).sum(), mask.new_tensor(float(mask.shape[0]))
    if loss_type == "dapo":
        return total.sum(), mask.sum()
    if loss_type == "bnpo":
        return total.sum() / mask.sum().clamp(min=1), mask.new_tensor(1.0)
    if loss_type == "dr_grpo":
        return total.sum(), mask.new_tensor(float(mask.shape[0] * max_completion_length))
    raise ValueError(f"stage.loss_type={loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: str = "dapo",
    max_completion_length: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(total, count) = aggregate(clipped objective + beta * k3 KL), the loss being total / count, and
    detached statistics (masked token means): `kl` (only with a reference), `clip_low`, `clip_high`,
    `clip_fraction`. Shapes as in the module docstring."""
    per_token, low, high = clipped_objective(logp, old_logp, advantages, epsilon_low, epsilon_high)
    stats = {
        "clip_low": masked_mean(low.float(), mask),
        "clip_high": masked_mean(high.float(), mask),
        "clip_fraction": masked_mean((low | high).float(), mask),
    }
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
        stats["kl"] = masked_mean(kl.detach(), mask)
    return *aggregate(per_token, mask, loss_type, max_completion_length), stats
