"""`python -m medvqa.run data=<each> data.root=<fixture> trainer.max_steps=2` trains and tests on every
reader's fixture: in-process with a smaller tiny model here, as the exact command in the slow suite."""

import json
import os
import subprocess
import sys

import pytest

from medvqa.run import train
from tests.conftest import ROOT, compose_cfg

# (conf/data name, fixture name, extra overrides)
READERS = [
    ("vqa_rad", "vqa_rad", []),
    ("vqa_rad", "vqa_rad_parquet", []),
    ("slake", "slake", []),
    ("kvasir_vqa", "kvasir_vqa", []),
    ("kvasir_vqa_x1", "kvasir_vqa_x1", ["data.filters={complexity:[1,2]}"]),
    ("medpix", "medpix", []),
    ("path_vqa", "path_vqa", []),
    ("pmc_vqa", "pmc_vqa", []),
    ("jsonl", "jsonl", ["data.window=[40,400]"]),
    ("mix", "mix", ["augment=medical", "data.group_by_length=true"]),
]
FAST = ["eval_untrained=false", "data.num_workers=0", "data.limit={val:2,test:2}", "stage.max_new_tokens=4",
        "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56"]  # fmt: skip


@pytest.mark.parametrize(("data", "fixture", "extra"), READERS, ids=[f for _, f, _ in READERS])
def test_two_training_steps_then_test_on_every_reader(release, tmp_path, data, fixture, extra):
    cfg = compose_cfg(
        [f"data={data}", f"data.root={release(fixture)}", "trainer.max_steps=2", *FAST, *extra], tmp_path
    )
    metrics = train(cfg)
    assert {"test/loss", "test/closed_acc", "test/open_recall"} <= set(metrics["test"])
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["samples"]["train"] > 0 and info["samples"]["test"] == 2
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 and all(p["answer"] for p in predictions)


def test_skipped_images_are_counted_and_printed_at_the_end(release_copy, tmp_path, capsys):
    root = release_copy("jsonl")
    (root / "scans" / "p4.png").write_bytes(b"\x89PNG broken")  # the test split's first image
    cfg = compose_cfg(["data=jsonl", f"data.root={root}", "trainer.max_steps=2", "data.on_bad_sample=skip", *FAST],
                      tmp_path / "run")  # fmt: skip
    train(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["skipped_in_evaluation"] == {"val": 0, "test": 1} and info["skipped_while_reading"] == {}
    assert "test: 1 of 2 questions skipped (unreadable images); scores are over 1" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(("data", "fixture", "extra"), READERS, ids=[f for _, f, _ in READERS])
def test_the_exact_command_runs_on_every_reader(release, tmp_path, data, fixture, extra):
    command = [sys.executable, "-m", "medvqa.run", f"data={data}", f"data.root={release(fixture)}",
               "trainer.max_steps=2", f"hydra.run.dir={tmp_path}", f"paths.root_dir={tmp_path}"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["test"]["test/loss"] > 0
