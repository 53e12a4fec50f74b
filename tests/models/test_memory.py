"""The pre-flight memory estimate (medvqa/models/memory.py): its weight, gradient and optimizer parts equal
the bytes a tiny model really holds after one step; the activation model's documented dependencies; the
printed line and its knob."""

from __future__ import annotations

import logging

import pytest
import torch

from medvqa.data.collate import VQACollator
from medvqa.models.freeze import freeze_parts
from medvqa.models.memory import GB, activation_bytes, estimate_memory, fix_for, memory_line
from medvqa.models.tiny import build_tiny
from medvqa.run import compose_config, train
from medvqa.stages.base import model_inputs
from tests.train_helpers import items, tiny_lora, tiny_run


def one_step(model, processor, optimizer) -> None:
    model.train()
    model(**model_inputs(VQACollator(processor)(items(2)))).loss.backward()
    optimizer.step()


def measured(model, optimizer) -> dict[str, int]:
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    params = list(model.parameters())
    return {
        "weights": sum(nbytes(p) for p in params if not p.requires_grad)
        + sum(nbytes(b) for b in model.buffers()),
        "trainable": sum(nbytes(p) for p in params if p.requires_grad),
        "gradients": sum(nbytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(
            nbytes(v) for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
        ),
    }


def test_lora_with_adamw_weights_gradients_and_optimizer_state_are_exact():
    model, processor = tiny_lora()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    estimate = estimate_memory(model, optimizer="AdamW")
    one_step(model, processor, optimizer)
    real = measured(model, optimizer)
    assert {k: estimate[k] for k in real} == real
    assert real["optimizer"] > 2 * real["trainable"]  # exp_avg, exp_avg_sq and a float32 step per tensor


def test_full_fine_tuning_with_frozen_vision_and_sgd_momentum_is_exact():
    vlm = build_tiny(hidden_size=32, num_layers=1, vision_depth=1)
    freeze_parts(vlm.model, ["vision", "projector"])
    optimizer = torch.optim.SGD([p for p in vlm.model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    estimate = estimate_memory(vlm.model, optimizer="SGD", momentum=True)
    one_step(vlm.model, vlm.processor, optimizer)
    real = measured(vlm.model, optimizer)
    assert {k: estimate[k] for k in real} == real
    assert estimate["total"] == sum(v for k, v in estimate.items() if k != "total")


def test_activations_grow_with_batch_tokens_and_generations_and_shrink_with_checkpointing_and_bf16():
    model = build_tiny(num_layers=3).model  # checkpointing saves memory from 2 layers on
    base = dict(sequences=2, seq_len=100, answer_len=4, image_patches=16)
    plain = activation_bytes(model, **base)
    assert activation_bytes(model, **(base | {"sequences": 8})) == 4 * plain  # micro-batch x generations
    assert activation_bytes(model, **(base | {"seq_len": 200})) > plain
    assert activation_bytes(model, **base, gradient_checkpointing=True) < plain
    assert activation_bytes(model, **base, precision="bf16-mixed") < plain
    assert estimate_memory(model, micro_batch=2, generations=4, seq_len=100)["activations"] == \
        estimate_memory(model, micro_batch=8, generations=1, seq_len=100)["activations"]  # fmt: skip


def test_a_frozen_vision_tower_keeps_no_activations():
    vlm = build_tiny(hidden_size=32, num_layers=1, vision_depth=1)
    with_vision = activation_bytes(vlm.model, 2, 50, 4, image_patches=400)
    freeze_parts(vlm.model, ["vision", "projector"])
    assert activation_bytes(vlm.model, 2, 50, 4, image_patches=400) == activation_bytes(
        vlm.model, 2, 50, 4, 0
    )
    assert with_vision > activation_bytes(vlm.model, 2, 50, 4, 0)


PARTS = {"weights": 1 * GB, "trainable": GB // 10, "gradients": GB // 10, "optimizer": GB // 5}


@pytest.mark.parametrize(("parts", "args", "knob"), [
    (PARTS | {"activations": 30 * GB}, (True, False, "32-true", False, 0.8), "data.max_pixels"),
    (PARTS | {"activations": 30 * GB}, (True, False, "bf16-mixed", False, 0.1), "stage.gradient_checkpointing=true"),
    (PARTS | {"weights": 30 * GB, "activations": 0}, (True, False, "bf16-mixed", True, 0.1), "peft=qlora"),
    (PARTS | {"optimizer": 30 * GB, "activations": 0}, (False, False, "bf16-mixed", True, 0.1), "peft=lora"),
])  # fmt: skip
def test_the_line_says_whether_it_fits_and_which_knob_to_turn(parts, args, knob):
    parts = parts | {"total": sum(parts.values())}
    fix = fix_for(parts, *args)
    assert knob in fix
    line = memory_line(parts, 8 * GB, "cuda:0 (8.0 GB)", fix)
    assert "will NOT fit" in line and knob in line and "\n" not in line
    assert memory_line(parts, 100 * GB, "RAM", fix).endswith(": fits")


def test_a_run_prints_the_estimate_before_the_first_step(tmp_path, caplog):
    cfg = compose_config(tiny_run(tmp_path / "data", "trainer.max_steps=1", "data.limit={train:4,val:4,test:4}",
                                  "trainer.val_check_interval=1"), tmp_path / "run")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="medvqa.callbacks.preflight"):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory estimate: ")]
    assert (
        len(lines) == 1
        and " weights + " in lines[0]
        and " MB trainable + " in lines[0]
        and " GB on RAM" in lines[0]
        and lines[0].endswith("fits")
    )
