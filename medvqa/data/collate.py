"""Turning (image, question, answer) items into model batches through the model's own processor.

One processor call per batch renders the prompts (chat template, image placeholder expansion, pixel
preprocessing). From it come two views of the same batch:
- `prompt_*`: left-padded prompts, for batched generation;
- `input_ids` / `labels` / ...: prompt + answer + end-of-turn, right-padded, where labels are -100 on the
  prompt (image and question tokens) and padding, so only answer tokens and the end token are supervised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from medvqa.data.sample import VQASample

IGNORE_INDEX = -100
CACHE_SIZE = 65536  # rendered prompts / tokenized answers kept per collator; both repeat across images
# Per-token fields a processor may return, and the value they take on answer tokens. PaliGemma's
# token_type_ids mark the suffix (1) that gets causal attention; Qwen's mm_token_type_ids mark image tokens.
ANSWER_FILL = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 1}
# sample fields carried to the stage in batch["meta"] (scoring, predictions, RL rewards)
# per-row fields a batch carries beside the tensors: for scoring, rewards, and the prediction rows that
# evaluation breakdowns and report galleries read (`image` with `image_row` / `image_member` finds the picture;
# `patient_id` / `image_id` are the clusters every interval resamples, medvqa/eval/stats.py row_clusters)
META_FIELDS = ("id", "question", "answer", "answer_type", "question_type", "modality", "plane", "organ",
               "caption", "source", "image", "image_row", "image_member", "image_id", "patient_id")  # fmt: skip


class VQACollator:
    """Collates dataset items `{"sample": VQASample, "image": PIL.Image | None}`; None images were unreadable
    and skipped (counted in `n_skipped`). A batch whose every image was unreadable is `empty_batch`: the
    stages skip it (see `is_empty`), so data.on_bad_sample=skip never ends a run, even at batch size 1."""

    def __init__(
        self,
        processor,
        system_prompt: str | None = None,
        prompt_template: str = "{question}",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_answer_tokens: int = 256,
        instruction: str | None = None,
        image_free: bool = False,
    ):
        """`image_free`: the prompts carry no image at all (no image part in the chat, no image tokens,
        no pixels): visual reliance's question-only condition (medvqa/eval/visual.py)."""
        self.processor = processor
        self.image_free = image_free
        self.instruction = instruction  # appended to every question (e.g. GRPO's answer-format request)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.system_prompt = system_prompt
        self.prompt_template = prompt_template
        self.max_answer_tokens = max_answer_tokens
        self.images_kwargs = _size_kwargs(processor, min_pixels, max_pixels)
        self.end_id = self.tokenizer.eos_token_id
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set one on the processor before training")
        # A plain dict, not functools.lru_cache: the collator is pickled into DataLoader workers.
        self._prompts: dict[str, str] = {}
        self._answers: dict[str, list[int]] = {}
        self.mm_types = bool(getattr(processor, "return_mm_token_type_ids", False))

    @classmethod
    def from_config(
        cls, processor, data: Mapping[str, Any], instruction: str | None = None, image_free: bool = False
    ) -> VQACollator:
        """The collator of a `data:` config (its system_prompt, prompt_template, min/max_pixels,
        max_answer_tokens; missing keys take the defaults): training, evaluation and inference build it here."""
        keys = ("system_prompt", "prompt_template", "min_pixels", "max_pixels", "max_answer_tokens")
        return cls(processor, **{k: data[k] for k in keys if k in data}, instruction=instruction,
                   image_free=image_free)  # fmt: skip

    def prompt_text(self, sample: VQASample) -> str:
        """The prompt as the model family expects it: its chat template, or PaliGemma's plain prefix."""
        question = self.prompt_template.format(**sample.to_dict())
        if self.instruction:
            question = f"{question}\n{self.instruction}"
        prompt = self._prompts.get(question)
        if prompt is None:  # rendering the Jinja chat template was ~20% of collation; questions repeat
            if len(self._prompts) >= CACHE_SIZE:
                self._prompts.clear()
            prompt = self._prompts[question] = self._render(question)
        return prompt

    def _render(self, question: str) -> str:
        if getattr(self.processor, "chat_template", None):
            image = [] if self.image_free else [{"type": "image"}]
            messages = [{"role": "user", "content": [*image, {"type": "text", "text": question}]}]
            if self.system_prompt:
                messages.insert(
                    0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]}
                )
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # PaliGemma: one <image> placeholder; the processor expands it and adds BOS and the closing newline
        if self.image_free:
            return f"answer en {question}"
        return f"{getattr(self.processor, 'image_token', '<image>')}answer en {question}"

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        n_skipped = sum(item["image"] is None for item in items)
        items = [item for item in items if item["image"] is not None]
        if not items:
            return empty_batch(n_skipped)
        samples: list[VQASample] = [item["sample"] for item in items]
        images: list[Image.Image] = [item["image"] for item in items]
        enc = self._encode([self.prompt_text(s) for s in samples], images)
        if self.mm_types:
            enc["mm_token_type_ids"] = mm_token_types(self.processor, enc["input_ids"])
        enc.pop("labels", None)  # some processors (PaliGemma) build labels of their own; ours follow below
        token_keys = [k for k, v in enc.items() if torch.is_tensor(v) and v.shape == enc["input_ids"].shape]
        batch = {f"prompt_{k}": enc[k] for k in token_keys}
        batch |= {k: v for k, v in enc.items() if k not in token_keys}  # pixel_values, image_grid_thw, ...
        batch |= self._with_answers(enc, token_keys, [s.answer for s in samples])
        batch["meta"] = {key: [getattr(s, key) for s in samples] for key in META_FIELDS}
        batch["n_skipped"] = n_skipped
        return batch

    def _encode(self, texts: list[str], images: list[Image.Image]):
        """The processor's left-padded encoding of the prompts with their images (none when image_free)."""
        if self.image_free and not getattr(self.processor, "chat_template", None):
            # PaliGemma's processor refuses a call without images; its prompt after the image tokens is
            # <bos> prefix \n with token_type_ids 0, which the tokenizer alone gives
            enc = self.tokenizer([f"{self.tokenizer.bos_token}{t}\n" for t in texts], add_special_tokens=False,
                                 return_tensors="pt", padding=True, padding_side="left")  # fmt: skip
            enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
            return enc
        return self.processor(
            text=texts,
            images=None if self.image_free else images,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            **({} if self.image_free else self.images_kwargs),
            **({"return_mm_token_type_ids": False} if self.mm_types else {}),
        )

    def answer_ids(self, answers: list[str]) -> list[list[int]]:
        """Each answer's tokens (cut to max_answer_tokens) and the end token; cached, as answers repeat."""
        missing = sorted({a for a in answers if a not in self._answers})
        if missing:
            if len(self._answers) >= CACHE_SIZE:
                self._answers.clear()
            ids = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
            self._answers |= {
                a: t[: self.max_answer_tokens] + [self.end_id] for a, t in zip(missing, ids, strict=True)
            }
        return [self._answers[a] for a in answers]

    def _with_answers(self, enc, token_keys: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
        """Strip each prompt's left padding, append answer + end token, right-pad; labels only on the answer.

        Row i of the result is gathered from [left-padded prompt (P) | answer (A)]: position j < L_i reads
        prompt column P - L_i + j, position L_i <= j < L_i + A_i reads answer column j - L_i, the rest is
        padding. One gather per field; the per-row Python loop it replaces was ~15% of collation."""
        ids = self.answer_ids(answers)
        answer = _right_pad([torch.tensor(a, dtype=enc["input_ids"].dtype) for a in ids], 0)
        prompt_len = enc["attention_mask"].sum(1, keepdim=True)
        end = prompt_len + torch.tensor([len(a) for a in ids])[:, None]
        width, j = enc["input_ids"].shape[1], torch.arange(int(end.max()))[None]
        in_prompt, in_answer = j < prompt_len, (j >= prompt_len) & (j < end)
        src = torch.where(in_prompt, width - prompt_len + j, width + j - prompt_len)
        src = src.clamp(max=width + answer.shape[1] - 1)  # padding positions: any valid column, masked below
        pad = {"input_ids": self.tokenizer.pad_token_id}
        out = {}
        for k in token_keys:
            tail = token_tail(k, answer)
            joined = torch.cat([enc[k], tail.to(enc[k].dtype)], dim=1).gather(1, src)
            out[k] = joined.masked_fill(~(in_prompt | in_answer), pad.get(k, 0))
        out["labels"] = out["input_ids"].masked_fill(~in_answer, IGNORE_INDEX)
        return out


def empty_batch(n_skipped: int) -> dict[str, Any]:
    """The batch of a micro-batch whose every image was unreadable: no rows, only the skip count."""
    return {"meta": {key: [] for key in META_FIELDS}, "n_skipped": n_skipped}


def is_empty(batch: dict[str, Any]) -> bool:
    """No rows to train on or score (every image in it was unreadable, data.on_bad_sample=skip)."""
    return not batch["meta"]["id"]


def token_tail(key: str, ids: torch.Tensor) -> torch.Tensor:
    """What per-token field `key` holds over tokens `ids` appended to a prompt (an answer here, a sampled
    completion in GRPO): the ids themselves for input_ids, else the field's ANSWER_FILL value."""
    return ids if key == "input_ids" else torch.full_like(ids, ANSWER_FILL.get(key, 0))


def mm_token_types(processor, input_ids: torch.Tensor) -> torch.Tensor:
    """What the processor's `create_mm_token_type_ids` returns (0 text, 1 image, 2 video, 3 audio, from the
    processor's own token-id lists), computed on the padded batch at once: its per-row numpy loop was ~15%
    of collation. tests/data/test_collate.py checks the two agree."""
    types = torch.zeros_like(input_ids)
    for code, kind in enumerate(("image", "video", "audio"), start=1):
        ids = [i for i in getattr(processor, f"{kind}_token_ids", None) or [] if i is not None]
        if ids:
            types[torch.isin(input_ids, torch.tensor(ids, dtype=input_ids.dtype))] = code
    return types


def _right_pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


def _size_kwargs(processor, min_pixels: int | None, max_pixels: int | None) -> dict[str, Any]:
    """Qwen-style processors bound the image area (min/max pixels); fixed-size ones (PaliGemma) ignore it."""
    if min_pixels is None and max_pixels is None:
        return {}
    image_processor = getattr(processor, "image_processor", None)
    size = dict(getattr(image_processor, "size", None) or {})
    if "longest_edge" not in size:
        return {}
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    return {"size": size}
