"""Discriminative learning rates: parameters land in the right group, each group's LR is logged."""

import csv

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from train_helpers import loader, sft_module, tiny_lora, trainer

from medvqa.models.param_groups import group_parameters

GROUPS = {"vision": {"lr": 1e-5}, "projector": {"lr": 1e-4, "weight_decay": 0.1}, "language": {"lr": 2e-5},
          "lora": {"lr": 1e-3}}  # fmt: skip


def _names(groups):
    return {g["name"]: len(g["params"]) for g in groups}


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_groups_by_module(family):
    model, _ = tiny_lora(family)
    model.base_model.model.lm_head.weight.requires_grad_(True) if family == "qwen2_vl" else None
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    lora_first = group_parameters(named, {"lora": {"lr": 1e-3}, **GROUPS})
    n_lora = sum("lora_" in n for n, _ in named)
    assert _names(lora_first)["lora"] == n_lora and sum(_names(lora_first).values()) == len(named)
    by_module = group_parameters(named, GROUPS)  # LoRA in the vision tower follows the tower
    vision = next(g for g in by_module if g["name"] == "vision")
    expected = [p for n, p in named if ("visual." in n or "vision_tower." in n) and "merger" not in n]
    assert {id(p) for p in vision["params"]} == {id(p) for p in expected} and vision["lr"] == 1e-5
    projector = next(g for g in by_module if g["name"] == "projector")
    assert projector["weight_decay"] == 0.1 and projector["params"]


def test_bad_group_config_names_the_key():
    with pytest.raises(ValueError, match=r"stage.param_groups.head needs a `match` regex"):
        group_parameters([], {"head": {"lr": 1.0}})
    with pytest.raises(ValueError, match=r"stage.param_groups.vision has unknown keys \['learning_rate'\]"):
        group_parameters([], {"vision": {"learning_rate": 1.0}})


def test_each_group_lr_is_logged(tmp_path):
    model, processor = tiny_lora()
    module = sft_module(model, processor, param_groups={"vision": {"lr": 0.01}, "language": {"lr": 0.02}})
    logger = CSVLogger(tmp_path, name="", version="")
    t = trainer(max_steps=2, logger=logger, log_every_n_steps=1, callbacks=[LearningRateMonitor("step")])
    t.fit(module, loader(processor, 4, 8))
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r.get("lr-SGD/vision"))
    assert float(row["lr-SGD/vision"]) == 0.01 and float(row["lr-SGD/language"]) == 0.02
    # LoRA in Qwen's merger matches neither group: it trains in `other` at the optimizer's lr
    assert {g["name"] for g in t.optimizers[0].param_groups} == {"vision", "language", "other"}
    assert float(row["lr-SGD/other"]) == 1.0
