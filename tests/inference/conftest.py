"""A tiny trained run shared by the inference tests, and the predict command's config composed in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_ROOT


@pytest.fixture(scope="session")
def run_dir(tiny_run_dir) -> Path:
    return tiny_run_dir


@pytest.fixture(scope="session")
def run_rows(run_dir) -> list[dict]:
    """The run's own test predictions (predictions.jsonl)."""
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def predictor(run_dir):
    from medvqa.inference import Predictor

    return Predictor.from_run(run_dir)


def predict_cfg(*overrides: str):
    """conf/predict.yaml with `overrides`, as `python -m medvqa.predict overrides` composes it."""
    with initialize_config_dir(config_dir=str(CONF_ROOT), version_base="1.3"):
        return compose("predict", overrides=list(overrides))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
