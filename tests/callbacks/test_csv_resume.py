"""metrics.csv after a kill and `ckpt_path=last` holds every logged step of both parts, once each."""

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_run

from medvqa.run import compose_config, train

ROOT = Path(__file__).resolve().parents[2]
LOG_EVERY_STEP = ["trainer.log_every_n_steps=1", "test_weights=last"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _steps(rows, key: str) -> list[int]:
    return [int(r["step"]) for r in rows if r.get(key)]


def _assert_whole_curve(out: Path) -> None:
    """10 steps logged 0..9, validations after steps 4, 8 and 10 (logged at 3, 7, 9), the test once."""
    rows = _rows(out)
    assert _steps(rows, "train/loss") == list(range(10))
    assert _steps(rows, "lr-AdamW/all") == list(range(10))
    assert _steps(rows, "val/closed_acc") == [3, 7, 9]
    assert len(_steps(rows, "test/closed_acc")) == 1  # a column the killed part never had


def test_csv_log_continues_after_a_crash_and_resume(data_dir, tmp_path):
    out = tmp_path / "run"
    kill = ["+callbacks.kill._target_=train_helpers.KillAt", "+callbacks.kill.step=6"]
    with pytest.raises(RuntimeError, match="killed at step 6"):
        train(compose_config(tiny_run(data_dir, *LOG_EVERY_STEP, *kill), out))
    # step 5 (logged as 4) came after the checkpoint at step 4: the resumed run logs it again
    assert _steps(_rows(out), "train/loss") == list(range(5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(compose_config(tiny_run(data_dir, *LOG_EVERY_STEP, "ckpt_path=last"), out))
    _assert_whole_curve(out)
    # resume_state resumes mid-epoch exactly: Lightning's "your dataloader is not resumable" is not shown
    assert not [w for w in caught if "not resumable" in str(w.message)]


@pytest.mark.slow  # two subprocess runs, one of them killed with SIGKILL (~40 s)
def test_csv_log_continues_after_kill_9_and_resume(data_dir, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "hung"
    args = [sys.executable, "-m", "medvqa.run", *tiny_run(data_dir, *LOG_EVERY_STEP), f"hydra.run.dir={out}"]
    env = os.environ | {"PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    hang = ["+callbacks.hang._target_=train_helpers.HangAt", "+callbacks.hang.step=6", f"+callbacks.hang.marker={marker}"]  # fmt: skip
    proc = subprocess.Popen(
        [*args, *hang], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert _steps(_rows(out), "train/loss") == list(range(5))  # step 5 (logged as 4) is past the checkpoint
    done = subprocess.run([*args, "ckpt_path=last"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not resumable" not in done.stderr  # ResumeState resumes mid-epoch exactly: no Lightning warning
    _assert_whole_curve(out)
