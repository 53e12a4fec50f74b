"""What metrics.json records, through whole tiny runs: val and test of the same weights, named, and the
decoding config evaluation used."""

from __future__ import annotations

import csv
import json

import pytest

from medvqa.run import compose_config, train
from tests.train_helpers import tiny_run


@pytest.fixture(scope="module")
def best_not_last(tmp_path_factory, data_dir):
    """Five validations; monitoring the *highest* validation loss makes the best checkpoint an early one."""
    out = tmp_path_factory.mktemp("run")
    overrides = tiny_run(
        data_dir, "trainer.val_check_interval=2", "optimized_metric=val/loss", "monitor_mode=max"
    )
    train(compose_config(overrides, output_dir=out))
    return out, json.loads((out / "metrics.json").read_text())


def _validations(out) -> dict[int, float]:
    with open(out / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")}


def test_metrics_json_val_and_test_are_of_the_best_checkpoint_named_in_it(best_not_last):
    out, metrics = best_not_last
    validations = _validations(out)
    assert metrics["weights"] == "best" and metrics["checkpoint"].startswith("step")
    best_step = int(metrics["checkpoint"].removeprefix("step").removesuffix(".ckpt"))
    assert best_step < 10  # the premise: the best checkpoint is not the last weights (step 10)
    best, last = max(validations.values()), validations[max(validations)]  # monitor: the highest val/loss
    assert best != pytest.approx(last, rel=1e-5)
    assert metrics["val"]["val/loss"] == pytest.approx(best, rel=1e-5)
    info = json.loads((out / "run_info.json").read_text())
    assert info["test_weights"] == "best"


def test_metrics_json_holds_the_evaluation_decoding_config(best_not_last):
    _, metrics = best_not_last
    generation = metrics["generation"]
    assert generation["do_sample"] is False and generation["num_beams"] == 1
    assert generation["repetition_penalty"] == 1.0 and generation["max_new_tokens"] == 3
    assert "temperature" not in generation and "top_p" not in generation and generation["eos_token_id"]


def test_last_weights_are_named_when_no_checkpoint_is_kept(tmp_path, data_dir):
    overrides = tiny_run(data_dir, "test_weights=last", "trainer.max_steps=4")
    metrics = train(compose_config(overrides, output_dir=tmp_path))
    assert metrics["weights"] == "last" and metrics["checkpoint"] is None
    validations = _validations(tmp_path)
    assert metrics["val"]["val/loss"] == pytest.approx(validations[max(validations)], rel=1e-5)
