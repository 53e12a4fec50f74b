"""data.on_bad_sample=skip through whole tiny runs on a synthetic release with corrupt image files: skipped
rows never end a run (data.batch_size=1 makes every unreadable image a whole batch), and the run says how
many were skipped in training and in evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.data.formats import synthetic
from medvqa.run import compose_config, train
from tests.train_helpers import tiny_run


def corrupt_release(data_dir: Path) -> list[str]:
    """Generate the tiny synthetic release (as tiny_run reads it), then overwrite every second image (some of
    each split's) with garbage bytes or a truncated copy of itself; the corrupted file names."""
    synthetic.read(data_dir / "synthetic", n_patients=30, images_per_patient=2, image_size=56)
    images = sorted((data_dir / "synthetic").rglob("*.jpg"))
    for i, path in enumerate(images[1::2]):
        path.write_bytes(b"not a jpeg" if i % 2 else path.read_bytes()[:40])
    return [p.name for p in images[1::2]]


STAGES = [
    pytest.param(["stage=sft"], id="sft"),
    pytest.param(["stage=dpo"], marks=pytest.mark.slow, id="dpo"),
    pytest.param(["stage=grpo", "stage.num_generations=2", "stage.max_completion_length=4"],
                 marks=pytest.mark.slow, id="grpo"),
]  # fmt: skip


@pytest.mark.parametrize("stage", STAGES)
def test_batch_size_one_trains_to_the_end_and_reports_the_skipped_rows(tmp_path, capsys, stage):
    corrupt_release(tmp_path / "data")
    out = tmp_path / "run"
    overrides = tiny_run(tmp_path / "data", *stage, "data.batch_size=1", "data.eval_batch_size=1",
                         "data.on_bad_sample=skip", "trainer.accumulate_grad_batches=2",
                         "trainer.max_steps=8", "stage.max_new_tokens=2")  # fmt: skip
    metrics = train(compose_config(overrides, output_dir=out))
    info = json.loads((out / "run_info.json").read_text())
    assert info["skipped_while_reading"]["unreadable image (train)"] > 0  # batches were wholly unreadable
    skipped = info["skipped_in_evaluation"]
    assert skipped["test"] > 0 and skipped["val"] > 0  # the premise: bad rows in every split
    assert (
        metrics["test"]["test/skipped"] == skipped["test"] and metrics["val"]["val/skipped"] == skipped["val"]
    )
    scored = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert metrics["test"]["test/scored"] == len(scored) == 8 - skipped["test"]  # data.limit test: 8
    printed = capsys.readouterr().out
    assert (
        f"test: {skipped['test']} of 8 questions skipped (unreadable images); scores are over {len(scored)}"
        in printed
    )
