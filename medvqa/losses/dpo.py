"""Direct preference optimisation: per-pair losses from summed answer-token log-probabilities.

All inputs are (B,) tensors of log p(answer | image, prompt) summed over the answer tokens, for the policy
(adapter on) and the reference (adapter off). With h = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected):
- sigmoid (DPO):  -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)   (eps: label smoothing,
                  the assumed fraction of flipped preference labels)
- ipo:            (h - 1 / (2 * beta))^2   (regresses the margin to a fixed target instead of pushing it to inf),
                  with every log-prob first divided by its sequence's answer-token count, as TRL does (agreed
                  with the IPO authors): the target then means the same for a 1-token and a 20-token answer
- hinge:          max(0, 1 - beta * h)     (SLiC)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Sum of next-token log-probs over supervised positions.

    logits (B, T, V) from a causal LM on the full sequence; labels (B, T) equal to the input ids on answer
    tokens and `ignore_index` elsewhere (prompt, image tokens, padding). Position t's logits predict token
    t + 1, so logits[:, :-1] are scored against labels[:, 1:]. Returns (B,).
    """
    targets = labels[:, 1:]
    mask = targets != ignore_index
    logps = token_logps(logits[:, :-1], targets.masked_fill(~mask, 0))
    return (logps * mask).sum(-1)


def sequence_tokens(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(B, T) labels -> (B,) the number of positions `sequence_logps` sums over (the answer tokens)."""
    return (labels[:, 1:] != ignore_index).sum(-1)


def token_logps(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position: logits (..., V), tokens (...) -> (...), in float32.

    Gathers one logit and subtracts a logsumexp, so no (..., V) log-prob tensor is kept for backward.
    """
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def dpo_loss(
    pol_chosen: torch.Tensor,
    pol_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss (B,) and the implicit rewards beta * (pol - ref) for chosen and rejected, (B,) each
    (detached: they are for logging). Inputs are (B,) summed log-probs; `chosen_tokens` / `rejected_tokens`
    (B,) are the answer-token counts, needed by ipo (its log-probs and rewards are per-token means)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"stage.loss_type={loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")
    if beta <= 0:
        raise ValueError(f"stage.beta={beta}: must be > 0 (it scales the implicit reward)")
    chosen_ratio, rejected_ratio = pol_chosen - ref_chosen, pol_rejected - ref_rejected
    if loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("loss_type=ipo length-normalises each side: pass the answer token counts")
        chosen_ratio = chosen_ratio / chosen_tokens.clamp_min(1)
        rejected_ratio = rejected_ratio / rejected_tokens.clamp_min(1)
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        loss = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        loss = (h - 1 / (2 * beta)) ** 2
    else:
        loss = torch.relu(1 - beta * h)
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
