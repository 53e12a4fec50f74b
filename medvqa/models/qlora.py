"""QLoRA's base model (`peft=qlora`, which sets `model.quantization=nf4`): the frozen weights stored in 4-bit
NF4 with double quantization (bitsandbytes), computed in bf16, with a LoRA adapter on top.

bitsandbytes' 4-bit kernels need a CUDA GPU, so on any other machine the run stops at start-up, before data
or model are touched, with one line saying so: there is no silent fallback to an unquantized base (a user
who asked for QLoRA sized the run for a 4-bit base). bitsandbytes is the `qlora` extra
(`pip install 'medvqa[qlora]'`); the check on a machine without CUDA never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import torch

QUANTIZATIONS = ("nf4",)
NO_CUDA = "peft=qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine has none: use peft=lora"


def check_quantization(quantization: str | None) -> None:
    """Raise (a user error: one line, exit 1) when `model.quantization` cannot run on this machine."""
    if quantization is None:
        return
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"model.quantization={quantization!r}; use null or one of {', '.join(QUANTIZATIONS)}"
        )
    if not torch.cuda.is_available():
        raise ValueError(NO_CUDA)
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("peft=qlora needs bitsandbytes: pip install 'medvqa[qlora]' (or use peft=lora)")


def bnb_config():
    """The QLoRA paper's storage: NF4 with double quantization, bf16 compute."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def quantized_kwargs(quantization: str | None) -> dict:
    """Extra `from_pretrained` arguments for `model.quantization` (none when it is null): the 4-bit config,
    bf16 for the weights left unquantized, and this process's GPU (LOCAL_RANK under DDP)."""
    check_quantization(quantization)
    if quantization is None:
        return {}
    device = int(os.environ.get("LOCAL_RANK", 0))
    return {"quantization_config": bnb_config(), "dtype": torch.bfloat16, "device_map": {"": device}}


def prepare(model, quantization: str | None):
    """peft's `prepare_model_for_kbit_training` on a 4-bit model: norms and head in fp32, input grads on.
    Gradient checkpointing stays the stage's knob (stage.gradient_checkpointing), not switched on here."""
    if quantization is None:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def quantize_built(model, quantization: str | None):
    """A model built in memory (the tiny models) quantized through the same path as a hub checkpoint:
    saved to a temporary folder, loaded back with `quantized_kwargs`, then `prepare`d."""
    if quantization is None:
        return model
    from transformers import AutoModelForImageTextToText

    kwargs = quantized_kwargs(quantization)
    with tempfile.TemporaryDirectory(prefix="medvqa-qlora-") as tmp:
        model.save_pretrained(tmp)
        loaded = AutoModelForImageTextToText.from_pretrained(tmp, **kwargs)
    loaded.generation_config = model.generation_config
    loaded.config._name_or_path = model.config._name_or_path  # built in memory, not a servable checkpoint
    return prepare(loaded, quantization)
