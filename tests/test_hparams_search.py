"""Optuna searches (`hparams_search=<name>`, hydra-optuna-sweeper) and the issue's basic sweep command."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from experiment_helpers import FAST, multirun, png_size
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from medvqa.report import sweep
from medvqa.run import CONF_DIR, compose_config


def _hydra_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_grpo_search_composes_over_lr_and_temperature_in_the_monitor_mode_direction(mode):
    cfg = _hydra_cfg(["experiment=grpo_vqarad", "hparams_search=grpo_lr_temperature", f"monitor_mode={mode}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[mode]
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 42
    assert dict(sweeper.params) == {
        "stage.lr": "tag(log, interval(5.0e-7, 2.0e-5))",
        "stage.temperature": "interval(0.6, 1.2)",
    }
    # the experiment is untouched: GRPO on VQA-RAD at its own lr and temperature until a trial overrides them
    assert cfg.stage._target_ == "medvqa.stages.grpo.GRPOModule" and cfg.stage.lr == 2.0e-6
    assert cfg.stage.temperature == 0.8 and cfg.optimized_metric == "val/closed_exact"


def test_grpo_search_brings_the_grpo_stage_and_sft_search_keeps_the_stage():
    assert _hydra_cfg(["hparams_search=grpo_lr_temperature"]).stage._target_.endswith("GRPOModule")
    cfg = _hydra_cfg(["hparams_search=sft_lr", "hydra.sweeper.n_trials=3"])
    assert cfg.stage._target_.endswith("SFTModule") and cfg.hydra.sweeper.n_trials == 3
    assert list(cfg.hydra.sweeper.params) == ["stage.lr"]


def test_the_issue_sweep_command_composes_every_combination():
    # python -m medvqa.run -m experiment=grpo_vqarad stage.lr=1e-6,2e-6,5e-6 stage.temperature=0.7,0.8,1.0
    args = ["experiment=grpo_vqarad", "stage.lr=1e-6,2e-6,5e-6", "stage.temperature=0.7,0.8,1.0"]
    parsed = OverridesParser.create().parse_overrides(args)
    jobs = BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]  # as the basic sweeper expands them
    assert len(jobs) == 9
    seen = set()
    for job in jobs:
        cfg = compose_config(job, output_dir="/tmp/unused")
        assert cfg.stage._target_ == "medvqa.stages.grpo.GRPOModule"
        assert cfg.stage.optimizer.lr == cfg.stage.lr  # the optimizer follows stage.lr
        seen.add((cfg.stage.lr, cfg.stage.temperature))
    assert seen == set(itertools.product([1e-6, 2e-6, 5e-6], [0.7, 0.8, 1.0]))


def _trials(sweep_dir) -> list[dict]:
    """Each trial's sampled overrides and logged val metrics (none for a failed one), from its job folder."""
    trials = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        metrics = json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").is_file() else {}
        trials.append(
            {"overrides": overrides, "failed": (job / "failed.json").is_file(), **metrics.get("val", {})}
        )
    return trials


def test_an_optuna_search_runs_three_trials_and_reports_the_best(tmp_path, data_dir):
    # minimise val/loss: after 2 steps it differs between learning rates (closed accuracy is 0 for all)
    multirun(tmp_path, data_dir, "hparams_search=sft_lr", "hydra.sweeper.n_trials=3",
             "optimized_metric=val/loss", "monitor_mode=min")  # fmt: skip
    trials = _trials(tmp_path)
    assert len(trials) == 3
    lrs = [float(t["overrides"]["stage.lr"]) for t in trials]
    assert all(1e-5 <= lr <= 3e-3 for lr in lrs) and len(set(lrs)) == 3
    losses = [t["val/loss"] for t in trials]
    assert len(set(losses)) == 3  # distinct values, so the choice of best below means something
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    best = min(range(3), key=lambda i: losses[i])
    assert math.isclose(results.best_value, losses[best], rel_tol=1e-9)
    assert math.isclose(results.best_params["stage.lr"], lrs[best], rel_tol=1e-9)
    # the report gathers the trials, names the Optuna best and plots the loss against the one parameter
    markdown = sweep(tmp_path, best_by="val/loss", mode="min")
    assert markdown.startswith(f"3 jobs: 3 ok, 0 failed; best val/loss = {losses[best]:.4g} at stage.lr=")
    assert f"Optuna best: {results.best_value:.4g} at stage.lr=" in markdown
    assert [p.name for p in tmp_path.glob("sweep_*.png")] == ["sweep_stage.lr.png"]
    assert min(png_size(tmp_path / "sweep_stage.lr.png")) > 100


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, data_dir):
    # batches of 0 samples make the DataLoader raise; the TPE seed samples 0 for trials 0-2 and 4 for trial 3.
    # A searched key must not also be fixed (the Optuna sweeper drops it from the space): no batch_size in base
    base = [a for a in FAST if not a.startswith("data.batch_size=")]
    multirun(tmp_path, data_dir, "hparams_search=sft_lr", "hydra.sweeper.n_trials=4", "data.batch_size=choice(0,4)",
             "optimized_metric=val/loss", "monitor_mode=min", base=base)  # fmt: skip
    trials = _trials(tmp_path)
    assert len(trials) == 4
    for trial in trials:  # failed exactly when the batch size was 0
        assert trial["failed"] == (trial["overrides"]["data.batch_size"] == "0")
        assert ("val/loss" in trial) != trial["failed"]
    assert 0 < sum(t["failed"] for t in trials) < 4
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert results.best_params["data.batch_size"] == 4
    assert results.best_value == min(t["val/loss"] for t in trials if not t["failed"])


@pytest.mark.slow
def test_a_grpo_optuna_search_over_lr_and_temperature(tmp_path, data_dir):
    multirun(tmp_path, data_dir, "hparams_search=grpo_lr_temperature", "hydra.sweeper.n_trials=3",
             "stage.num_generations=2", "stage.max_completion_length=4")  # fmt: skip
    trials = _trials(tmp_path)
    assert len(trials) == 3
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert set(results.best_params) == {"stage.lr", "stage.temperature"}
    assert 5e-7 <= results.best_params["stage.lr"] <= 2e-5
    assert 0.6 <= results.best_params["stage.temperature"] <= 1.2
    assert results.best_value == max(t["val/closed_exact"] for t in trials)  # grpo's monitor, mode max
    best = [t for t in trials if float(t["overrides"]["stage.lr"]) == results.best_params["stage.lr"]]
    assert (
        len(best) == 1
        and float(best[0]["overrides"]["stage.temperature"]) == results.best_params["stage.temperature"]
    )
    sweep(tmp_path, best_by="val/closed_acc")
    assert sorted(p.name for p in tmp_path.glob("sweep_*.png")) == [
        "sweep_stage.lr.png",
        "sweep_stage.temperature.png",
    ]
