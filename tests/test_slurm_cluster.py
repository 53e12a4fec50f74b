"""SLURM for real: jobs submitted with `python -m medvqa.run -m hydra/launcher=slurm` to a one-node cluster
(scripts/slurm_test_cluster.sh: munged, slurmctld and slurmd as root, config under a scratch folder) that the
`cluster` fixture starts with `make slurm-up` and always stops with `make slurm-down`. Marked `slurm`:
`make test-slurm` (CI runs it after the fast suite); skipped when not root."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.utils import instantiate
from test_slurm import sbatch_options
from train_helpers import tiny_run

from medvqa.run import compose_config

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]
SLURM = ["-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def tiny(data_dir, **changes) -> list[str]:
    """tests/train_helpers.py's tiny run, with plain progress lines every step (the tests wait for them)."""
    overrides = dict(o.split("=", 1) for o in tiny_run(data_dir))
    overrides.pop("callbacks.progress_bar")
    overrides |= {"callbacks.progress_bar.log_every_n_steps": "1", "trainer": "cpu"} | changes
    return [f"{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, data_dir):
    """The environment that reaches the test cluster (SLURM_CONF); the daemons stop even when a test fails."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster starts munged/slurmctld/slurmd as root (CI has root)")
    state = tmp_path_factory.mktemp("slurm")
    make = ["make", "-s", "-C", str(ROOT), f"SLURM_TEST_DIR={state}"]
    try:
        up = subprocess.run([*make, "slurm-up"], capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        # the synthetic set written once, before jobs that read it run side by side
        instantiate(compose_config(tiny(data_dir), tmp_path_factory.mktemp("setup")).data).setup()
        yield os.environ | {"SLURM_CONF": str(state / "slurm.conf"), "PYTHONPATH": str(ROOT)}
    finally:
        subprocess.run([*make, "slurm-down"], timeout=300)


def medvqa(args: list[str], env: dict, cwd: Path, module: str = "medvqa.run", **kwargs):
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900, **kwargs)  # fmt: skip


def slurm(args: list[str], env: dict) -> str:
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def state_of(job: str, env: dict) -> str:
    return slurm(["squeue", "--states=all", "--noheader", "-o", "%T", "-j", job], env).strip()


def test_sweep_is_one_array_job_and_its_summary_names_the_failed_job(cluster, data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    done = medvqa(
        [*SLURM, f"hydra.sweep.dir={sweep}", *tiny(data_dir), "stage.lr=1e-3,2e-3,-1"], cluster, tmp_path
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    opts = sbatch_options(script.read_text())
    assert opts["array"] == "0-2%3" and "gpus-per-node" not in opts  # trainer=cpu: no GPU keys typed
    array = script.name.split("_")[0]
    assert state_of(f"{array}_0", cluster) == state_of(f"{array}_1", cluster) == "COMPLETED"
    assert (sweep / "0" / "metrics.json").is_file() and (sweep / "1" / "metrics.json").is_file()
    assert "Invalid learning rate" in json.loads((sweep / "2" / "failed.json").read_text())["error"]
    assert "SLURM sweep: 2 of 3 jobs finished" in out
    assert re.search(rf"#2 \([^)]*stage.lr=-1\) job {array}_2: ValueError: Invalid learning rate", out)
    log = Path(re.search(r"log: (\S+)", out).group(1))
    assert log.is_file() and "Invalid learning rate" in log.read_text()
    assert "sacct" not in out and not any("sacct" in p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    report = medvqa(["sweep", str(sweep)], cluster, tmp_path, module="medvqa.report")
    assert report.returncode == 0, report.stderr[-2000:]
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok"), ("2", "failed")]


def _jobs(out: str) -> dict[int, str]:
    return {int(k): j for k, j in re.findall(r"stage (\d) \(\w+\) is job (\d+)", out)}


def test_pipeline_stages_are_jobs_chained_by_afterok_and_resubmitting_resumes(cluster, data_dir, tmp_path):
    sweep, run = tmp_path / "chain", tmp_path / "chain" / "0"
    args = [
        *SLURM,
        f"hydra.sweep.dir={sweep}",
        *tiny(data_dir),
        "experiment=exp4_curriculum",
        "pipeline.max_steps=2",
    ]
    first = medvqa(
        [*args, "+pipeline.stages.1.init=/nonexistent/adapter"], cluster, tmp_path
    )  # stage 2 fails
    out = first.stdout + first.stderr
    assert first.returncode != 0, out[-4000:]
    jobs = _jobs(out)
    assert sorted(jobs) == [1, 2, 3]
    for k in (2, 3):  # each stage's sbatch script waits for the previous stage's job to succeed
        opts = sbatch_options((sweep / ".submitit" / jobs[k] / f"{jobs[k]}_submission.sh").read_text())
        assert opts["dependency"] == f"afterok:{jobs[k - 1]}" and opts["kill-on-invalid-dep"] == "yes"
    assert re.search(rf"pipeline stage 2 \(medium\) failed \(job {jobs[2]}, FAILED\): .*nonexistent", out)
    assert f"pipeline stage 3 (hard) not started (job {jobs[3]} CANCELLED" in out
    assert state_of(jobs[3], cluster) == "CANCELLED" and not (run / "stages" / "3_hard").exists()
    easy = run / "stages" / "1_easy" / "metrics.json"
    finished_at = easy.stat().st_mtime_ns

    second = medvqa(args, cluster, tmp_path)  # the same command, the bad override fixed
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert "stages 1-1 already finished" in out and sorted(_jobs(out)) == [2, 3]
    assert easy.stat().st_mtime_ns == finished_at  # stage 1 was not run again
    for stage in ("1_easy", "2_medium", "3_hard"):
        assert (run / "stages" / stage / "adapter" / "adapter_model.safetensors").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["easy", "medium", "hard"]
    assert all(s["test"] for s in summary["stages"])
    assert (
        "| 1. easy | sft |" in out and "| 3. hard | sft |" in out
    )  # the summary table, in the launcher's log
    assert not (run / "failed.json").exists()


def _wait_for(path_glob, sweep: Path, text: str, proc, timeout: float = 600) -> Path:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        for log in sweep.glob(path_glob):
            if text in log.read_text():
                return log
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {path_glob} (launcher exit {proc.poll()})")


def test_usr1_and_scontrol_requeue_resume_to_the_uninterrupted_metrics(cluster, data_dir, tmp_path):
    """Three identical jobs: one signalled with USR1 (the time-limit warning), one requeued by scontrol (SIGTERM),
    one left alone; both interrupted ones are requeued, resume from the checkpoint saved at the signal, and end
    with the third's metrics.json. Stopped before their first validation (step 10)."""
    sweep = tmp_path / "requeue"
    args = [*SLURM, f"hydra.sweep.dir={sweep}", "seed=7,7,7",
            *tiny(data_dir, **{"trainer.max_steps": "20", "trainer.val_check_interval": "10", "peft.lora_dropout": "0.1",
                               "test_weights": "last"})]  # fmt: skip
    with subprocess.Popen([sys.executable, "-m", "medvqa.run", *args], env=cluster, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:  # fmt: skip
        first = _wait_for("**/*_0_0_log.out", sweep, "step 2/20", proc)
        array = first.name.split("_")[0]
        slurm(["scancel", "--signal=USR1", f"{array}_0"], cluster)  # to the job's steps: srun's python
        _wait_for("**/*_1_0_log.out", sweep, "step 2/20", proc)
        slurm(["scontrol", "requeue", f"{array}_1"], cluster)
        while proc.poll() is None:  # SLURM holds a requeued job ~2 minutes (BeginTime): release it now
            for task in ("0", "1"):
                if state_of(f"{array}_{task}", cluster) == "PENDING":
                    subprocess.run(
                        ["scontrol", "update", f"JobId={array}_{task}", "StartTime=now"], env=cluster
                    )
            time.sleep(1)
        out = proc.stdout.read()
    assert proc.returncode == 0, out[-4000:]
    logs = ["".join(p.read_text() for p in sorted((sweep / ".submitit" / f"{array}_{t}").glob("*_log.*")))
            for t in range(3)]  # fmt: skip
    assert "SIGUSR1 received" in logs[0] and f"requeued SLURM job {array}_0" in logs[0]
    assert "Received SIGTERM" in logs[1]
    for t in (0, 1):
        stopped = int(re.search(r"stopped (?:by a signal )?at step (\d+)", logs[t]).group(1))
        assert stopped < 10  # mid-training, before the first validation wrote any checkpoint
        assert "SLURM requeued this job: resuming from" in logs[t]
        assert "Restarts=1" in slurm(["scontrol", "show", "job", f"{array}_{t}"], cluster)
    unbroken = json.loads((sweep / "2" / "metrics.json").read_text())
    assert "Restarts=0" in slurm(["scontrol", "show", "job", f"{array}_2"], cluster)
    for t in (0, 1):
        assert json.loads((sweep / str(t) / "metrics.json").read_text()) == unbroken
        assert (sweep / str(t) / "predictions.jsonl").read_text() == (
            sweep / "2" / "predictions.jsonl"
        ).read_text()


def test_ddp_under_srun_two_tasks_equals_two_processes_without_slurm(cluster, data_dir, tmp_path):
    ddp = tiny(data_dir, **{"trainer": "ddp", "trainer.accelerator": "cpu", "trainer.devices": "2",
                            "trainer.max_steps": "4", "trainer.val_check_interval": "4",
                            "data.limit": "{train:24,val:8,test:7}"})  # fmt: skip
    sweep, local = tmp_path / "srun", tmp_path / "local"
    env = {k: v for k, v in cluster.items() if not k.startswith("SLURM_")}  # the plain run: no SLURM at all
    with subprocess.Popen([sys.executable, "-m", "medvqa.run", f"hydra.run.dir={local}", *ddp], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as plain:  # fmt: skip
        done = medvqa([*SLURM, f"hydra.sweep.dir={sweep}", *ddp], cluster, tmp_path)
        plain_out = plain.communicate(timeout=900)[0]
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert plain.returncode == 0, plain_out[-4000:]
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    opts = sbatch_options(script.read_text())
    assert opts["ntasks-per-node"] == "2" and "gpus-per-node" not in opts
    job = script.name.split("_")[0]
    rank_logs = [(sweep / ".submitit" / job / f"{job}_{r}_log.out").read_text() for r in (0, 1)]
    hashes = [
        re.search(rf"rank {r}/2 trainable weights sha256 (\w+)", log) for r, log in enumerate(rank_logs)
    ]
    assert all(hashes) and hashes[0].group(1) == hashes[1].group(1)  # both ranks (SLURM's tasks) trained
    run = sweep / "0"
    assert json.loads((run / "metrics.json").read_text()) == json.loads((local / "metrics.json").read_text())
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == (
        local / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 7  # one writer: each question once
