"""End to end on the tiny model: outputs a user relies on, reproducibility, the CLI, learning from pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from peft import PeftModel

from medvqa.models.tiny import build_tiny
from medvqa.run import ROOT_DIR, compose_config, train

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "trainer.max_steps=6", "trainer.val_check_interval=3", "stage.max_new_tokens=4",
        "data.limit={val: 8, test: 12}", "callbacks.progress_bar=null"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    metrics = train(compose_config([*TINY, f"paths.data_dir={data_dir}"], output_dir=out))
    return out, metrics


def test_run_writes_config_adapter_predictions_metrics(tiny_run):
    out, metrics = tiny_run
    assert {"untrained", "val", "test"} <= set(metrics)
    assert {"test/closed_acc", "test/open_recall", "test/exact_match", "test/token_f1", "test/loss"} <= set(
        metrics["test"]
    )
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert {"id", "question", "answer", "prediction", "answer_type", "scores"} <= set(rows[0])
    assert "model" in (out / "config.yaml").read_text()


def test_adapter_loads_with_peft_and_reproduces_the_trained_weights(tiny_run):
    out, _ = tiny_run
    base = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model
    loaded = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora = {n: p for n, p in loaded.named_parameters() if "lora_B" in n}
    assert lora and any(p.abs().sum() > 0 for p in lora.values())  # trained: B starts at zero


def test_same_seed_gives_identical_metrics_via_the_cli(tiny_run, tmp_path, data_dir):
    out, _ = tiny_run
    env = os.environ | {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "-m",
        "medvqa.run",
        *TINY,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path}",
    ]
    done = subprocess.run(cmd, cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()
    assert "closed_acc" in done.stdout and "untrained" in done.stdout.lower()


@pytest.mark.slow
def test_default_run_learns_from_pixels(tmp_path, data_dir):
    """The README's bar: the default run learns closed questions from the pixels (test closed accuracy >= 0.80;
    measured 0.83-0.94 on different 2-core CPUs, whose float rounding changes the trajectory), and with blank
    images it stays near chance (0.515 measured), at least 0.2 below."""
    real = train(
        compose_config([f"paths.data_dir={data_dir}", "callbacks.progress_bar=null"], tmp_path / "real")
    )
    blank = train(compose_config([f"paths.data_dir={data_dir}", "callbacks.progress_bar=null",
                                  "data.blank_images=true", "eval_untrained=false"], tmp_path / "blank"))  # fmt: skip
    assert real["test"]["test/closed_acc"] >= 0.80
    assert blank["test"]["test/closed_acc"] <= 0.60
    assert blank["test"]["test/closed_acc"] <= real["test"]["test/closed_acc"] - 0.2
