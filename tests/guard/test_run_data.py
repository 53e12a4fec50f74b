"""The guard reads a finished run's own data and never creates any: an old run with a relative data.root,
or a run whose data is gone, is a one-line error naming data.root, and nothing is written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from medvqa.guard.calibration import run_questions


def copy_with_root(run_dir: Path, to: Path, root: str) -> Path:
    to.mkdir()
    shutil.copy(run_dir / "config.yaml", to / "config.yaml")
    config = yaml.safe_load((to / "config.yaml").read_text())
    config["data"]["root"] = root
    (to / "config.yaml").write_text(yaml.safe_dump(config))
    return to


def test_the_guard_reads_the_runs_stored_data(tiny_run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule, questions = run_questions(tiny_run_dir)
    assert questions and datamodule.splits["val"] and list(tmp_path.iterdir()) == []


def test_a_relative_data_root_is_an_error_not_a_new_dataset(tiny_run_dir, tmp_path, monkeypatch):
    run = copy_with_root(tiny_run_dir, tmp_path / "old_run", "./data/synthetic")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"relative data.root=\./data/synthetic"):
        run_questions(run)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_missing_synthetic_data_is_an_error_not_regenerated(tiny_run_dir, tmp_path):
    empty = tmp_path / "moved"
    empty.mkdir()
    run = copy_with_root(tiny_run_dir, tmp_path / "run", str(empty))
    with pytest.raises(
        FileNotFoundError, match="data.root=.* has no complete .*the run's synthetic data is gone"
    ):
        run_questions(run)
    assert list(empty.iterdir()) == []
    gone = copy_with_root(tiny_run_dir, tmp_path / "run2", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        run_questions(gone)
    assert not os.path.exists(tmp_path / "nowhere")
