"""Which metric a run monitors: the stage's default, followed by checkpointing, early stopping and sweeps."""

from __future__ import annotations

import pytest

from medvqa.run import compose_config


@pytest.mark.parametrize(("stage", "monitor"), [("sft", "val/closed_acc"), ("dpo", "val/closed_exact"),
                                                ("grpo", "val/closed_exact")])  # fmt: skip
def test_dpo_and_grpo_monitor_a_strict_metric_and_every_consumer_agrees(stage, monitor):
    cfg = compose_config([f"stage={stage}", "callbacks=[default,early_stopping]"], output_dir="/tmp/unused")
    assert cfg.optimized_metric == monitor
    assert cfg.callbacks.model_checkpoint.monitor == cfg.callbacks.early_stopping.monitor == monitor


def test_the_grpo_experiment_and_an_explicit_override():
    assert compose_config(["experiment=grpo_vqarad"], "/tmp/unused").optimized_metric == "val/closed_exact"
    cfg = compose_config(["stage=grpo", "optimized_metric=val/composite"], output_dir="/tmp/unused")
    assert cfg.callbacks.model_checkpoint.monitor == "val/composite"
