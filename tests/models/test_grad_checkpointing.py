"""Gradient checkpointing with LoRA: same gradients, and far fewer activations kept for backward."""

import torch
from train_helpers import items, tiny_lora

from medvqa.data.collate import VQACollator
from medvqa.models.grad_checkpointing import enable_gradient_checkpointing
from medvqa.stages.base import model_inputs


def _grads_and_saved(checkpointing: bool):
    model, processor = tiny_lora()
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    saved = []  # tensors kept for backward; inside a checkpointed layer torch keeps only its inputs
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        loss = model(**model_inputs(VQACollator(processor)(items(3)))).loss
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, len(saved)


def test_checkpointing_gives_the_same_lora_gradients_and_saves_fewer_activations():
    plain, plain_saved = _grads_and_saved(False)
    ckpt, ckpt_saved = _grads_and_saved(True)
    assert ckpt_saved < plain_saved / 2, (ckpt_saved, plain_saved)
    assert all(g.abs().sum() > 0 for n, g in plain.items() if "language_model" in n and "lora_" in n)
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-4, atol=1e-6)
