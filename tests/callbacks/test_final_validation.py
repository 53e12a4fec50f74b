"""Every fit ends validated and checkpointed: a run shorter than trainer.val_check_interval, or one whose last
step falls between two validations, still reports val metrics and has a best checkpoint."""

import csv
import json

import torch
from safetensors.torch import load_file
from train_helpers import tiny_run

from medvqa.run import compose_config, train


def _val_steps(out) -> list[int]:
    with open(out / "csv" / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("val/closed_acc")]


def test_run_shorter_than_val_check_interval_validates_and_checkpoints_at_the_end(data_dir, tmp_path):
    out = tmp_path / "short"
    metrics = train(compose_config(tiny_run(data_dir, "trainer.max_steps=3"), out))  # val_check_interval=4
    assert metrics["val"] and "val/closed_acc" in metrics["val"]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert (out / "checkpoints" / "step000003.ckpt").is_file()  # the best (only) validation
    assert json.loads((out / "run_info.json").read_text())["test_weights"] == "best"
    assert len(_val_steps(out)) == 1


def test_last_step_between_validations_is_validated_once(data_dir, tmp_path):
    out = tmp_path / "ten"
    train(compose_config(tiny_run(data_dir), out))  # max_steps=10, validations at 4 and 8, then the end
    assert len(_val_steps(out)) == 3 and len(set(_val_steps(out))) == 3
    assert json.loads((out / "run_info.json").read_text())["stopped_early"] is None  # ran its whole budget
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    # adapter/ holds the tested weights: the best checkpoint by the monitor (test_weights=best)
    (best,) = (out / "checkpoints").glob("step*.ckpt")
    state = torch.load(best, weights_only=True)["state_dict"]
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for name, value in adapter.items():
        torch.testing.assert_close(state["model." + name.replace(".weight", ".default.weight")], value)
    on_the_interval = tmp_path / "eight"
    train(compose_config(tiny_run(data_dir, "trainer.max_steps=8"), on_the_interval))
    assert len(_val_steps(on_the_interval)) == 2  # step 8 was validated already: not twice
