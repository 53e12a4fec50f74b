"""Every option of every config group composes with the primary config, and its target exists."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from medvqa.run import CONF_DIR, compose_config

SKIP_GROUPS = {"hydra", "guard"}  # hydra/ configures Hydra itself and is checked by the run tests; guard/ is
# not a training group (the app, predict and evaluate compose it: tests/guard/test_guard_config.py)


def _options():
    for group in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in SKIP_GROUPS):
        for option in sorted(group.glob("*.yaml")):
            yield group.name, option.stem


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


@pytest.mark.parametrize(("group", "option"), list(_options()))
def test_option_composes_resolves_and_targets_import(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}"], output_dir=tmp_path)
    tree = OmegaConf.to_container(cfg, resolve=True)
    for target in _targets(tree):
        try:
            get_class(target)
        except (ImportError, ValueError):
            assert callable(get_method(target)), target


def test_every_group_has_options():
    groups = {g for g, _ in _options()}
    assert {
        "model",
        "peft",
        "data",
        "stage",
        "trainer",
        "precision",
        "callbacks",
        "logger",
        "paths",
    } <= groups


@pytest.mark.parametrize("stage", ["sft", "dpo", "grpo"])
def test_stage_lr_is_the_optimizers_learning_rate(stage):
    """Sweeps name the learning rate `stage.lr`; the optimizer partial must follow it."""
    from hydra.utils import instantiate

    cfg = compose_config([f"stage={stage}", "stage.lr=3.5e-6"])
    optimizer = instantiate(cfg.stage.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.param_groups[0]["lr"] == 3.5e-6
