"""Loading vision-language models: hub id or local path -> (model, processor), through transformers' Auto classes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "paligemma")


@dataclass
class VLM:
    model: Any  # a transformers PreTrainedModel (later wrapped by peft)
    processor: Any  # its ProcessorMixin
    family: str = ""


class ModelUnavailableError(RuntimeError):
    """The checkpoint cannot be found offline or locally; the message says what to set."""


def from_pretrained(
    name_or_path: str,
    family: str = "",
    dtype: str = "auto",
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> VLM:
    """Load any image-text-to-text checkpoint (Qwen2-VL, Qwen2.5-VL, PaliGemma, ...) by hub id or local path."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, dtype=_dtype(dtype), attn_implementation=attn_implementation, **kwargs
        )
    except OSError as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not os.path.isdir(name_or_path)
        where = "is not in the local Hugging Face cache" if offline else "could not be loaded"
        raise ModelUnavailableError(
            f"model.name_or_path={name_or_path} {where} (no network?). Download it where there is network "
            f"(`hf download {name_or_path} --local-dir DIR`) and set model.name_or_path=DIR. Cause: {e}"
        ) from None
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return VLM(model=model, processor=processor, family=family or model.config.model_type)


def _dtype(name: str):
    if name in ("auto", None):
        return "auto"
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}  # fmt: skip
    if name not in table:
        raise ValueError(f"model.dtype={name!r}; use one of auto, {', '.join(table)}")
    return table[name]
