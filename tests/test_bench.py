"""The benchmarks run and report what they claim; their speed targets are measured, never asserted here."""

import json
import statistics
import subprocess
import sys

import pytest

from medvqa.run import ROOT_DIR as ROOT

SMALL_SYNTHETIC = ["data.reader.n_patients=30", "data.reader.images_per_patient=2"]


def test_bench_sft_reports_rates_and_the_ratios_of_its_own_rounds(data_dir):
    overrides = " ".join([*SMALL_SYNTHETIC, f"paths.data_dir={data_dir}", "model.hidden_size=32",
                          "model.num_layers=1", "data.batch_size=4"])  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "medvqa.bench",
        "sft",
        "steps=4",
        "warmup=1",
        "rounds=3",
        f"overrides={overrides}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    rounds = result["rounds_detail"]
    assert len(rounds["lightning_step_s"]) == len(rounds["bare_step_s"]) == 3
    # the reported ratio is the median of the counted rounds' ratios (round 1 warms up)
    ratios = [a / b for a, b in zip(rounds["lightning_step_s"][1:], rounds["bare_step_s"][1:], strict=True)]
    assert abs(result["step_time_ratio_lightning_over_bare"] - statistics.median(ratios)) < 1e-2
    assert result["batch_size"] == 4 and result["collate_samples_per_s"] > 0
    assert set(result["targets"]) == {"step_time_ratio_max", "collate_over_train_min"}


def test_bench_eval_reports_batched_and_one_at_a_time_on_the_same_items(data_dir):
    overrides = " ".join([*SMALL_SYNTHETIC, "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1",
                          "stage.max_new_tokens=3"])  # fmt: skip
    cmd = [sys.executable, "-m", "medvqa.bench", "eval", "items=6", "batch_size=4", f"data_dir={data_dir}",
           f"overrides={overrides}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    generation, bertscore = result["generation"], result["bertscore"]
    assert (
        generation["items"] == 6
        and generation["batch_size"] == 4
        and 0 <= generation["same_predictions"] <= 6
    )
    assert generation["speedup"] == pytest.approx(
        generation["one_at_a_time_s"] / generation["batched_s"], rel=0.05
    )
    assert bertscore["pairs"] == 6 and bertscore["max_abs_diff"] < 1e-6  # batching changes speed, not scores
    assert set(result["targets"]) == {"generation_speedup_min", "bertscore_speedup_min"}


def test_bench_rejects_an_unknown_name():
    done = subprocess.run(
        [sys.executable, "-m", "medvqa.bench", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "usage" in done.stderr


@pytest.mark.parametrize(
    "args, line",
    [(["predict", "run=/x"], "Error: python -m medvqa.bench predict: out= is required"),
     (["sft", "bogus=1"], "Error: python -m medvqa.bench sft: unknown option bogus= (known: overrides, rounds, steps, warmup)"),
     (["eval", "run=/nonexistent-run"], "Error: run=/nonexistent-run has no config.yaml")],
)  # fmt: skip
def test_a_wrong_bench_option_or_run_is_one_error_line(args, line):
    done = subprocess.run([sys.executable, "-m", "medvqa.bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode in (1, 2)
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(line), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
