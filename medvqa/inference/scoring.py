"""How sure the model is of an answer: the mean log-probability of its generated tokens, and for a closed
question the log-probability of each polar option as a neutral answer. The test loop (medvqa/stages/base.py)
and the Predictor both call `scored_generation`, so the answer scored, its confidence and the guard's input
come from one generation.

Confidence of a closed answer (the contract docs/predict.md states):
    s(o) = log p(the neutral answer for o, then the end token | image, prompt)      (`option_logprobs`)
    P_T(o) = exp(s(o) / T) / sum over the question's options o' of exp(s(o') / T)
    confidence = P_T(the option the answer names); None when the answer names none of them.
The neutral answer is the bare option ("Yes." against "No.", polar.option_texts), for the chosen option and
its competitor alike; the model's own sentence is never rewritten into a self-contradiction. A structured
completion (GRPO's `<think>...</think><answer>...</answer>`) keeps its reasoning and scores the neutral
answer inside the `<answer>` tag, so the shared reasoning conditions every option alike. T is 1 unless the
run was calibrated (medvqa/eval/calibration.py: temperature scaling fitted on the validation split).
Scored rows are the prompt without its padding, the text and the end token, right-padded: the sequence the
collator builds for training (teacher forcing; medvqa/stages/dpo.py answer_logps sums its answer tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from medvqa.data.collate import IGNORE_INDEX, token_tail
from medvqa.inference.polar import option_of, option_texts
from medvqa.losses.dpo import token_logps

ANSWER_TAG = "<answer>"


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


def scored_text(completion: str, neutral: str) -> str:
    """What is scored for one option: the neutral answer, inside the completion's last `<answer>` tag (its
    reasoning kept) when the completion has one."""
    at = completion.rfind(ANSWER_TAG)
    return neutral if at < 0 else f"{completion[: at + len(ANSWER_TAG)]}{neutral}</answer>"


def take_rows(inputs: dict[str, Any], index: Sequence[int]) -> dict[str, Any]:
    """The model inputs of rows `index` (repeats allowed), images with them. Qwen-VL processors flatten all
    images' patches into one `pixel_values` (sum of patches, D), split per image by `image_grid_thw`."""
    rows = inputs["input_ids"].shape[0]
    at = torch.tensor(list(index), dtype=torch.long, device=inputs["input_ids"].device)
    out = {}
    for key, value in inputs.items():
        if key == "pixel_values" and "image_grid_thw" in inputs:
            per_image = value.split(inputs["image_grid_thw"].prod(-1).tolist())
            out[key] = torch.cat([per_image[i] for i in index])
        elif torch.is_tensor(value) and value.shape[0] == rows:
            out[key] = value.index_select(0, at)
        else:
            raise ValueError(f"cannot select rows of model input {key!r} of shape {tuple(value.shape)}")
    return out


def scored_inputs(prompts: dict[str, Any], index: Sequence[int], texts: Sequence[str], tokenizer) -> dict:
    """Model inputs whose row r is prompt `index[r]` (left padding stripped), then `texts[r]`'s tokens and
    the end token, right-padded; `labels` are IGNORE_INDEX except on the text and end tokens."""
    picked = take_rows(prompts, index)
    keep = picked["attention_mask"].bool()
    token_keys = [k for k, v in picked.items() if torch.is_tensor(v) and v.shape == keep.shape]
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    per_key: dict[str, list[torch.Tensor]] = {k: [] for k in token_keys}
    labels = []
    for r, tokens in enumerate(ids):
        tail = torch.tensor([*tokens, tokenizer.eos_token_id], device=keep.device)
        for key in token_keys:
            head = picked[key][r][keep[r]]
            per_key[key].append(torch.cat([head, token_tail(key, tail).to(head.dtype)]))
        labels.append(torch.cat([torch.full((int(keep[r].sum()),), IGNORE_INDEX, device=keep.device), tail]))
    pad = {"input_ids": tokenizer.pad_token_id}
    out = {k: torch.nn.utils.rnn.pad_sequence(v, batch_first=True, padding_value=pad.get(k, 0))
           for k, v in per_key.items()}  # fmt: skip
    out["labels"] = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX)
    return out | {k: v for k, v in picked.items() if k not in token_keys}


@torch.no_grad()
def option_logprobs(model, prompts: dict[str, Any], questions: Sequence[str], completions: Sequence[str],
                    answers: Sequence[str], tokenizer) -> list[dict[str, float] | None]:  # fmt: skip
    """Per row of `prompts` (prompt_inputs of a batch), {option: s(o)} over its question's polar options
    (see the module docstring), or None for an open question. One forward pass for all options."""
    from medvqa.stages.dpo import answer_logps

    index, texts, spans = [], [], []
    for row, (question, completion, answer) in enumerate(zip(questions, completions, answers, strict=True)):
        neutral = option_texts(question, answer)
        spans.append(None if neutral is None else (len(texts), list(neutral)))
        for text in (neutral or {}).values():
            index.append(row)
            texts.append(scored_text(completion, text))
    if not texts:
        return [None] * len(questions)
    logps = answer_logps(model, scored_inputs(prompts, index, texts, tokenizer)).float().cpu().tolist()
    return [None if span is None else dict(zip(span[1], logps[span[0] : span[0] + len(span[1])], strict=True))
            for span in spans]  # fmt: skip


def scored_generation(stage, batch: dict[str, Any], parse: Callable[[str], str]) -> dict[str, list]:
    """Generate the batch's answers once, as evaluation decodes, and score that generation:
    {"completions", "answers" (parse(completion)), "mean_logprobs", "option_logprobs"} (lists, batch order)."""
    from medvqa.stages.base import prompt_inputs

    out = stage.generate_output(batch, output_logits=True, return_dict_in_generate=True)
    new = out.sequences[:, batch["prompt_input_ids"].shape[1] :]
    completions = stage.decode(new)
    eos = stage.eval_generation_config().eos_token_id
    mean_lp = mean_logprobs(torch.stack(out.logits, 1), new, eos)
    answers = [parse(c) for c in completions]
    options = option_logprobs(stage.model, prompt_inputs(batch), batch["meta"]["question"], completions,
                              answers, stage.processor.tokenizer)  # fmt: skip
    return {"completions": completions, "answers": answers, "mean_logprobs": mean_lp.tolist(),
            "option_logprobs": options}  # fmt: skip


def confidence_fields(scored: dict[str, list], i: int) -> dict[str, Any]:
    """Row i's prediction-row fields from `scored_generation`: `mean_logprob`, and `option_logprobs` for a
    polar question."""
    options = scored["option_logprobs"][i]
    return {"mean_logprob": scored["mean_logprobs"][i]} | ({"option_logprobs": options} if options else {})


def probabilities(logprobs: dict[str, float] | None, temperature: float = 1.0) -> dict[str, float] | None:
    """{option: P_T(option)} from the options' log-probabilities (None for an open question)."""
    from medvqa.eval.calibration import option_probs  # (it imports medvqa.inference.polar)

    return None if logprobs is None else option_probs(logprobs, temperature)


def confidence(answer: str, probs: dict[str, float] | None) -> float | None:
    """P(the option `answer` names) among `probs`; None for an open question and for a closed answer that
    names none of the options (there is no choice of the model's to be sure of; the guard abstains)."""
    if probs is None:
        return None
    named = option_of(answer, list(probs))
    return probs[named] if named is not None else None
