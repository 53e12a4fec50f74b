"""hydra/launcher=slurm: the composed launcher config, passed through hydra-submitit-launcher's own launch
code and submitit's SlurmExecutor, renders the sbatch script a cluster would get. No cluster here: `srun`
on PATH is a stand-in that is never run (submitit only checks it exists) and nothing is submitted; jobs on a
real one-node cluster: tests/test_slurm_cluster.py (make test-slurm)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import submitit  # the `slurm` extra; make install installs it
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from medvqa.pipeline import run_pipeline
from medvqa.run import CONF_DIR, compose_config


def render_sbatch(overrides: list[str], tmp_path, monkeypatch, dependency: str | None = None) -> str:
    """The sbatch script medvqa's launcher (medvqa/slurm.py) would submit for a job with these overrides, built
    by the same executor its array jobs and stage chains use (`dependency`: the job a chained stage waits for)."""
    fake_srun = tmp_path / "bin" / "srun"
    fake_srun.parent.mkdir(exist_ok=True)
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
            return_hydra_config=True,
        )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    executor = launcher._executor(dependency)
    assert isinstance(executor._executor, submitit.SlurmExecutor)
    return executor._executor._make_submission_file_text("python -m medvqa.run", "uid")


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.MULTILINE))


def test_slurm_launcher_renders_partition_gpus_time_memory_and_one_task_per_ddp_rank(tmp_path, monkeypatch):
    script = render_sbatch(
        ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu",
         "hydra.launcher.timeout_min=90", "hydra.launcher.mem_gb=120", "hydra.launcher.account=lab",
         "+hydra.launcher.additional_parameters.mail-type=END"],
        tmp_path, monkeypatch,
    )  # fmt: skip
    opts = sbatch_options(script)
    assert opts["partition"] == "gpu"
    assert opts["gpus-per-node"] == "4" and opts["ntasks-per-node"] == "4"  # = trainer.devices
    assert opts["nodes"] == "2"  # = trainer.num_nodes
    assert opts["time"] == "90"  # minutes
    assert opts["mem"] == "120GB"
    assert opts["cpus-per-task"] == "8"
    assert opts["account"] == "lab" and opts["mail-type"] == "END"
    assert opts["signal"] == "USR2@120"
    assert "srun" in script and "python -m medvqa.run" in script


def test_slurm_launcher_defaults_follow_a_single_device_trainer(tmp_path, monkeypatch):
    opts = sbatch_options(render_sbatch(["trainer=gpu"], tmp_path, monkeypatch))
    assert opts["gpus-per-node"] == "1" and opts["ntasks-per-node"] == "1" and opts["nodes"] == "1"
    assert opts["time"] == "1440" and opts["mem"] == "64GB"
    assert "partition" not in opts  # the cluster's default partition


def test_a_cpu_trainer_asks_for_no_gpus(tmp_path, monkeypatch):
    opts = sbatch_options(render_sbatch(["trainer=cpu"], tmp_path, monkeypatch))
    assert "gpus-per-node" not in opts and opts["ntasks-per-node"] == "1"
    ddp_cpu = sbatch_options(render_sbatch(["trainer=ddp", "trainer.accelerator=cpu"], tmp_path, monkeypatch))
    assert "gpus-per-node" not in ddp_cpu and ddp_cpu["ntasks-per-node"] == "2"


def test_a_chained_stage_waits_for_the_previous_job_to_succeed(tmp_path, monkeypatch):
    opts = sbatch_options(render_sbatch(["trainer=gpu", "+hydra.launcher.additional_parameters.mail-type=END"],
                                        tmp_path, monkeypatch, dependency="41"))  # fmt: skip
    assert opts["dependency"] == "afterok:41" and opts["kill-on-invalid-dep"] == "yes"
    assert opts["mail-type"] == "END"  # the user's own extra options stay


def test_until_stage_runs_stages_up_to_k_and_leaves_the_summary_to_the_last_job(tmp_path):
    """What a chained stage job runs: stages 1..k (finished ones skipped), no summary; k out of range refused."""
    ran = []

    def train(scfg):  # records the stage and leaves what a finished stage leaves: adapter and metrics
        out = Path(scfg.paths.output_dir)
        ran.append(out.name)
        (out / "adapter").mkdir(parents=True)
        (out / "adapter" / "adapter_config.json").write_text("{}")
        (out / "metrics.json").write_text(json.dumps({"test": {"test/closed_acc": 0.5}}))
        return {"test": {"test/closed_acc": 0.5}}

    cfg = lambda k: compose_config(["experiment=exp4_curriculum", f"++pipeline.until_stage={k}"], tmp_path)  # noqa: E731
    run_pipeline(cfg(2), train)
    assert ran == ["1_easy", "2_medium"] and not (tmp_path / "summary.json").exists()
    run_pipeline(cfg(3), train)  # the last job: stages 1-2 finished, skipped
    assert ran == ["1_easy", "2_medium", "3_hard"] and (tmp_path / "summary.json").is_file()
    with pytest.raises(ValueError, match=r"pipeline.until_stage=4: the pipeline has stages 1..3"):
        run_pipeline(cfg(4), train)
