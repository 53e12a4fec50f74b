"""`kill -TERM` of a `python -m medvqa.run` before its first validation: exit 143, a checkpoint, and the
printed `ckpt_path=last` command finishes the run with the metrics of an unbroken one (callbacks.preemption)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_run

from medvqa.run import compose_config, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # three short runs, ~1 min under load (make test-full)
def test_sigterm_before_first_validation_exits_143_saves_and_ckpt_path_last_finishes(data_dir, tmp_path):
    overrides = dict(o.split("=", 1) for o in tiny_run(data_dir))
    overrides.pop("callbacks.progress_bar")  # its plain lines (stdout is a pipe) tell when training runs
    overrides |= {"trainer": "cpu", "trainer.max_steps": "12", "trainer.val_check_interval": "12",
                  "callbacks.progress_bar.log_every_n_steps": "1", "peft.lora_dropout": "0.1", "test_weights": "last"}  # fmt: skip
    args = [f"{k}={v}" for k, v in overrides.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed"
    with subprocess.Popen([sys.executable, "-m", "medvqa.run", f"hydra.run.dir={killed}", *args], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:  # fmt: skip
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "step 2/12" in line:
                proc.send_signal(signal.SIGTERM)  # what `kill -TERM <pid>` sends
                break
        out = "".join(seen) + proc.stdout.read()
    assert proc.returncode == 143, out[-3000:]  # not 0: the run did not finish
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)
    assert 2 <= ckpt["global_step"] < 12 and not (killed / "metrics.json").exists()
    command = out.split("resume with: ")[1].splitlines()[0]
    assert f"hydra.run.dir={killed}" in command and command.endswith("ckpt_path=last")
    resumed = subprocess.run([sys.executable, *shlex.split(command)[1:]], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    unbroken = train(compose_config(args, tmp_path / "unbroken"))
    finished = json.loads((killed / "metrics.json").read_text())
    assert finished["test"] == pytest.approx(unbroken["test"], abs=1e-6)
    assert finished["val"] == pytest.approx(unbroken["val"], abs=1e-6)
