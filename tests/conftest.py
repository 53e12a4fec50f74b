"""Shared fixtures: tiny models, generated datasets in real release formats, Hydra composition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[1]
CONF_ROOT = ROOT / "conf"
# small enough for seconds, large enough to split by patient
SMALL_SYNTHETIC = ["data.reader.n_patients=30", "data.reader.images_per_patient=2"]


@pytest.fixture(scope="session")
def tiny():
    """tiny(family) -> VLM, built once per family per session (build is deterministic)."""
    from medvqa.models.tiny import build_tiny

    cache = {}

    def get(family: str = "qwen2_vl"):
        if family not in cache:
            cache[family] = build_tiny(family, hidden_size=32, num_layers=1, vision_depth=1, image_size=56)
        return cache[family]

    return get


def compose_cfg(overrides: list[str], output_dir: Path | None = None):
    """The composed config as `python -m medvqa.run overrides` would see it."""
    from medvqa.run import compose_config

    return compose_config(overrides, output_dir)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, data_dir) -> Path:
    """One finished tiny run (tests/train_helpers.py `tiny_run`), trained once per session and shared by the
    tests that only read a run folder (evaluate, predict, export): they must never write into it."""
    from medvqa.run import compose_config, train
    from tests.train_helpers import tiny_run

    out = tmp_path_factory.mktemp("tiny_run")
    train(compose_config(tiny_run(data_dir), output_dir=out))
    return out
