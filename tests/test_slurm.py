"""hydra/launcher=slurm: the composed launcher config, passed through hydra-submitit-launcher's own launch
code and submitit's SlurmExecutor, renders the sbatch script a cluster would get. No cluster here: `srun`
on PATH is a stand-in that is never run (submitit only checks it exists) and submission is intercepted."""

from __future__ import annotations

import re

import submitit  # the `slurm` extra; make install installs it
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from medvqa.run import CONF_DIR


def render_sbatch(overrides: list[str], tmp_path, monkeypatch) -> str:
    """The sbatch script the launcher would submit for a one-job multirun with these overrides."""
    fake_srun = tmp_path / "bin" / "srun"
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{__import__('os').environ['PATH']}")
    submitted = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", lambda ex, fn, *a: submitted.append(ex) or [])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
            return_hydra_config=True,
        )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    launcher.launch([["seed=1"]], initial_job_idx=0)
    (executor,) = submitted
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
