"""model.freeze (full fine-tuning of some parts), LoRA presets that leave the vision tower out, and the
warning for adapters a vLLM server ignores."""

from __future__ import annotations

import logging

import pytest
from hydra.utils import instantiate
from peft import get_peft_model

from medvqa.models.freeze import (
    LANGUAGE_LINEAR,
    check_parts,
    freeze_parts,
    part_of,
    vision_adapter_modules,
    warn_vision_adapters,
)
from medvqa.models.tiny import build_tiny
from medvqa.run import build, compose_config
from tests.train_helpers import tiny_run

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "paligemma")


def small(family: str):
    return build_tiny(family, hidden_size=32, num_layers=1, vision_depth=1, image_size=56)


@pytest.mark.parametrize("family", FAMILIES)
def test_peft_lora_puts_adapters_on_every_language_linear_layer_and_none_in_the_vision_tower(family):
    model = get_peft_model(small(family).model, instantiate(compose_config(["peft=lora"]).peft))
    adapted = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
    assert adapted and all(part_of(n) == "language" and ".layers." in n for n in adapted)
    # all seven projections of the language model's layer: q k v o gate up down
    assert {n.rsplit(".", 1)[1] for n in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"}  # fmt: skip
    assert vision_adapter_modules(model) == []
    assert compose_config(["peft=lora"]).peft.target_modules == LANGUAGE_LINEAR  # the documented preset


@pytest.mark.parametrize("family", FAMILIES)
def test_all_linear_reaches_the_vision_tower_and_the_helper_names_those_modules(family):
    model = get_peft_model(
        small(family).model, instantiate(compose_config(["peft=lora", "peft.target_modules=all-linear"]).peft)
    )
    vision = vision_adapter_modules(model)
    assert vision and all(part_of(n) in ("vision", "projector") for n in vision)
    assert any(part_of(n) == "vision" for n in vision) and any(part_of(n) == "projector" for n in vision)


def test_the_vllm_warning_is_one_line_for_a_served_checkpoint_and_quiet_for_tiny_models(caplog):
    model = get_peft_model(small("qwen2_vl").model, instantiate(compose_config(["peft=lora_tiny"]).peft))
    with caplog.at_level(logging.WARNING, logger="medvqa.models.freeze"):
        assert warn_vision_adapters(model, "training start")  # the modules are returned ...
        assert not caplog.records  # ... but a model built in memory is nobody's deployment
        model.config._name_or_path = "Qwen/Qwen2-VL-2B-Instruct"
        warn_vision_adapters(model, "outputs/run/adapter written")
    (record,) = caplog.records
    assert "vLLM serves LoRA on the language model only" in record.getMessage()
    assert "\n" not in record.getMessage()


def trainable_parts(model) -> set[str]:
    return {part_of(n) for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", FAMILIES)
def test_model_freeze_leaves_only_the_other_parts_trainable_in_full_fine_tuning(tmp_path, family):
    model_cfg = "tiny_qwen2_5_vl" if family == "qwen2_5_vl" else f"tiny_{family}"
    cfg = compose_config(tiny_run(tmp_path, f"model={model_cfg}", "peft=none", "model.freeze=[vision,projector]",
                                  "data.limit={train:4,val:4,test:4}"), tmp_path / "run")  # fmt: skip
    model, _, module = build(cfg)
    assert trainable_parts(model) == {"language"}
    # what configure_optimizers hands the optimizer: the language model's weights only
    assert {part_of(n) for n, p in module.model.named_parameters() if p.requires_grad} == {"language"}
    cfg = compose_config(tiny_run(tmp_path, f"model={model_cfg}", "peft=none", "model.freeze=[language]",
                                  "data.limit={train:4,val:4,test:4}"), tmp_path / "run")  # fmt: skip
    assert trainable_parts(build(cfg)[0]) == {"vision", "projector"}


def test_model_freeze_under_an_adapter_freezes_the_adapter_weights_in_those_parts():
    model = get_peft_model(small("qwen2_vl").model, instantiate(compose_config(["peft=lora_tiny"]).peft))
    freeze_parts(model, ["vision", "projector"])
    assert trainable_parts(model) == {"language"}
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_unknown_parts_and_freezing_everything_are_refused():
    with pytest.raises(ValueError, match=r"model.freeze=\['vision', 'text'\]: unknown part\(s\) \['text'\]"):
        check_parts(["vision", "text"])
    with pytest.raises(ValueError, match="leaves no parameter to train"):
        freeze_parts(small("paligemma").model, ["vision", "projector", "language"])


def test_every_parameter_of_the_three_families_belongs_to_one_part():
    for family in FAMILIES:
        names = [n for n, _ in small(family).model.named_parameters()]
        assert all(part_of(n) in ("vision", "projector", "language") for n in names), family
