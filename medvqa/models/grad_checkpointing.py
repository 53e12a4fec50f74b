"""Gradient checkpointing on a (peft-wrapped) vision-language model: recompute activations in backward."""

from __future__ import annotations


def enable_gradient_checkpointing(model) -> None:
    """Switch on transformers' gradient checkpointing for every sub-model that supports it (language model
    and, for Qwen-VL, the vision blocks).

    Non-reentrant checkpointing is used: it supports `torch.autograd.grad` (the OOM guard's atomic
    backward) and needs no input that requires grad. Under peft the frozen embeddings' outputs do not
    require grad; with reentrant checkpointing a segment whose inputs need no grad would silently give no
    gradient to the LoRA weights inside it, so input grads are switched on for adapter models anyway
    (cheap, and correct whichever checkpoint implementation a model class picks).
    """
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "peft_config"):
        model.enable_input_require_grads()
