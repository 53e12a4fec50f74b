"""Entry points answer a user's mistake with its one message (stderr, exit 1) and keep the full trace for
HYDRA_FULL_ERROR=1; data paths are checked before the model is built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import medvqa.models.tiny
from medvqa.cli import is_user_error, user_errors
from medvqa.data.errors import DataError
from medvqa.models.builders import ModelUnavailableError
from medvqa.run import ROOT_DIR, build, compose_config


def medvqa_run(*overrides: str, **env: str) -> subprocess.CompletedProcess:
    environ = os.environ | {"PYTHONPATH": str(ROOT_DIR), "WANDB_MODE": "offline"} | env
    environ.pop("HYDRA_FULL_ERROR", None) if "HYDRA_FULL_ERROR" not in env else None
    return subprocess.run([sys.executable, "-m", "medvqa.run", *overrides], cwd=ROOT_DIR, env=environ,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_wrong_data_root_is_one_line_on_stderr_and_a_failed_exit(tmp_path):
    done = medvqa_run("data=vqa_rad", "data.root=/nonexistent", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    # the last line, alone; Lightning's hardware and tip lines are not printed (medvqa/cli.py NOISE)
    assert done.stderr.strip().splitlines()[-1].startswith("Error: data.root=/nonexistent does not exist; ")
    assert done.stderr.count("Error") == 1, done.stderr
    assert "GPU available" not in done.stderr and "Tip:" not in done.stderr, done.stderr


def test_hydra_full_error_keeps_the_traceback(tmp_path):
    done = medvqa_run(
        "data=vqa_rad", "data.root=/nonexistent", f"hydra.run.dir={tmp_path}", HYDRA_FULL_ERROR="1"
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "DataError: data.root=/nonexistent does not exist" in done.stderr


@pytest.mark.parametrize(
    ("error", "user"),
    [
        (DataError("data.root=/x does not exist"), True),
        (ModelUnavailableError("model.name_or_path=x is not in the cache"), True),
        (FileNotFoundError("ckpt_path=last but /r/checkpoints/last.ckpt does not exist"), True),
        (FileNotFoundError("stage.init_adapter=/a has no adapter_config.json"), True),
        (ValueError("model.dtype='fp8'; use one of auto, fp32"), True),
        (KeyError("optimized_metric=val/x was not logged"), True),
        (ValueError("expected dim=2, got 3"), False),  # a library's error: a bug to show with its trace
        (FileNotFoundError("/tmp/cache/x.bin"), False),
        (RuntimeError("CUDA out of memory"), False),
    ],
)
def test_user_errors_are_told_from_bugs(error, user):
    assert is_user_error(error) is user


def test_user_errors_exits_with_the_message_and_lets_bugs_through(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info, user_errors():
        raise KeyError("optimized_metric=val/x was not logged")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "Error: optimized_metric=val/x was not logged\n"

    @user_errors()
    def bug():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        bug()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(DataError), user_errors():
        raise DataError("data.root=/x does not exist")


@pytest.fixture
def model_must_not_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the data paths were checked")

    monkeypatch.setattr(medvqa.models.tiny, "build_tiny", refuse)


def test_a_missing_data_root_is_reported_before_the_model_is_built(model_must_not_load, tmp_path):
    cfg = compose_config(["data=vqa_rad", f"data.root={tmp_path / 'x'}"], tmp_path / "run")
    with pytest.raises(DataError, match=rf"data.root={tmp_path / 'x'} does not exist; Download VQA-RAD"):
        build(cfg)


def test_a_root_without_the_release_files_is_reported_before_the_model_is_built(
    model_must_not_load, tmp_path
):
    (tmp_path / "empty").mkdir()
    cfg = compose_config(["data=slake", f"data.root={tmp_path / 'empty'}"], tmp_path / "run")
    with pytest.raises(DataError, match="has no train.json"):
        build(cfg)
