"""How sure the model is of an answer: the mean log-probability of its generated tokens, and for a closed
question the probability of each polar option as the complete answer.

Confidence of a closed answer (the contract docs/predict.md states):
    s(o) = log p(completion with the answer's words for its option replaced by o, then the end token | ...)
    P(o) = exp s(o) / sum over the question's options o' of exp s(o')
    confidence = P(the option the answer names); None when the answer names none of them.
Each o is spelled as the question spells it and the named one as the answer did (polar.option_texts).
For a plain completion ("yes") s(o) is log p(o, end | image, prompt), the sequence the model was trained
to produce; for a structured one (GRPO's `<think>...</think><answer>yes</answer>`) only the answer span
changes, so the shared reasoning cancels out of P. The scored rows go through the same collator as
training (answer tokens + end token under teacher forcing, medvqa/stages/dpo.py: answer_logps).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from medvqa.inference.polar import option_of, option_texts
from medvqa.losses.dpo import token_logps
from medvqa.stages.base import model_inputs


def mean_logprobs(
    logits: torch.Tensor, new_tokens: torch.Tensor, eos: int | list[int] | None
) -> torch.Tensor:
    """(B,) mean log-probability of each row's generated tokens up to and including its first end token
    (the padding generate writes after it is left out). logits (B, T, V) as generate's `output_logits`
    gave them (raw, before any processor), new_tokens (B, T)."""
    lp = token_logps(logits, new_tokens)
    ends = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=new_tokens.device)
    is_end = torch.isin(new_tokens, ends).long()
    # a position counts while no end token came before it (the end token itself counts)
    before = torch.cumsum(is_end, 1) - is_end
    valid = (before == 0).float()
    return (lp * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def with_option(completion: str, answer: str, option: str) -> str:
    """The completion with its answer (its last occurrence: the `<answer>` tag comes last) replaced."""
    at = completion.rfind(answer)
    if not answer or at < 0:
        return option
    return completion[:at] + option + completion[at + len(answer) :]


@torch.no_grad()
def option_probabilities(model, collator, ready: list[dict[str, Any]], completions: list[str],
                         answers: list[str], device) -> list[dict[str, float] | None]:  # fmt: skip
    """Per item of `ready` (collator items: sample + decoded image), {option: P(option)} over its polar
    options (see the module docstring), or None for an open question. One forward pass for all options."""
    from medvqa.stages.dpo import answer_logps

    rows, spans, options = [], [], []
    for item, completion, answer in zip(ready, completions, answers, strict=True):
        texts = option_texts(item["sample"].question, answer)
        found = list(texts) if texts is not None else None
        options.append(found)
        if texts is None:
            continue
        spans.append((len(rows), len(texts)))
        for text in texts.values():
            sample = replace(item["sample"], answer=with_option(completion, answer, text))
            rows.append({"sample": sample, "image": item["image"]})
    if not rows:
        return [None] * len(ready)
    batch = move_data_to_device(collator(rows), device)
    logps = answer_logps(model, model_inputs(batch)).float().cpu()
    spans_left = iter(spans)
    out: list[dict[str, float] | None] = []
    for found in options:
        if found is None:
            out.append(None)
            continue
        start, n = next(spans_left)
        probs = torch.softmax(logps[start : start + n], 0).tolist()
        out.append(dict(zip(found, probs, strict=True)))
    return out


def confidence(answer: str, probs: dict[str, float] | None) -> float | None:
    """P(the option `answer` names) among `probs`; None for an open question and for a closed answer that
    names none of the options (there is no choice of the model's to be sure of; the guard abstains)."""
    if probs is None:
        return None
    named = option_of(answer, list(probs))
    return probs[named] if named is not None else None
