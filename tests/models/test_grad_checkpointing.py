"""Gradient checkpointing with LoRA: same gradients, and the decoder layers really run twice."""

import torch
from train_helpers import items, tiny_lora

from medvqa.data.collate import VQACollator
from medvqa.models.grad_checkpointing import enable_gradient_checkpointing
from medvqa.stages.base import model_inputs


def _grads_and_layer_calls(checkpointing: bool):
    model, processor = tiny_lora()
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    calls = []
    layer = model.base_model.model.model.language_model.layers[0]
    layer.register_forward_hook(lambda *a: calls.append(1))
    model(**model_inputs(VQACollator(processor)(items(3)))).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, len(calls)


def test_checkpointing_gives_the_same_lora_gradients_and_recomputes():
    plain, plain_calls = _grads_and_layer_calls(False)
    ckpt, ckpt_calls = _grads_and_layer_calls(True)
    assert (plain_calls, ckpt_calls) == (1, 2)  # forward, then the recomputation in backward
    assert all(g.abs().sum() > 0 for n, g in plain.items() if "language_model" in n and "lora_" in n)
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-4, atol=1e-6)
