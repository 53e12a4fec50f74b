"""Early stopping says when and why it ended a run, on the console and in run_info.json."""

import json
import logging

from train_helpers import tiny_run

from medvqa.run import compose_config, train


def test_early_stop_is_printed_and_recorded_in_run_info(data_dir, tmp_path, caplog):
    # min_delta 10: no validation after the first counts as an improvement, so patience 1 stops at the
    # second validation (step 8 of 10)
    extra = ["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1",
             "callbacks.early_stopping.min_delta=10"]  # fmt: skip
    with caplog.at_level(logging.INFO):
        train(compose_config(tiny_run(data_dir, *extra), tmp_path))
    info = json.loads((tmp_path / "run_info.json").read_text())["stopped_early"]
    assert info["step"] == 8 and info["epoch"] == 1 and info["max_steps"] == 10
    assert info["reason"] == "patience_exhausted" and info["monitor"] == "val/closed_acc"
    assert info["patience"] == 1 and isinstance(info["best"], float)
    printed = [r.getMessage() for r in caplog.records if "early stopping" in r.getMessage()]
    assert len(printed) == 1 and "step 8 of 10" in printed[0] and "val/closed_acc" in printed[0]
    assert "patience 1" in printed[0] and f"{info['best']:.4f}" in printed[0]
