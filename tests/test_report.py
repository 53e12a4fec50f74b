"""Sweeps through the CLI: a failed job is recorded and the sweep goes on; the report gathers every job."""

from __future__ import annotations

import csv
import json

import pytest
from experiment_helpers import multirun as _multirun
from experiment_helpers import png_size

from medvqa.report import main as report_main
from medvqa.report import sweep


def test_a_failed_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path, data_dir, capsys):
    # job 0 runs; job 1 asks for batches of 0 samples, which the DataLoader refuses
    _multirun(tmp_path, data_dir, "data.batch_size=0,4")
    assert (tmp_path / "0" / "failed.json").is_file() and not (tmp_path / "0" / "metrics.json").exists()
    assert (tmp_path / "1" / "metrics.json").is_file()
    report_main(["sweep", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [(r["job"], r["data.batch_size"], r["status"]) for r in rows] == [
        ("0", "0", "failed"),
        ("1", "4", "ok"),
    ]
    assert "batch_size" in rows[0]["error"] and rows[0]["test/closed_acc"] == ""
    assert 0.0 <= float(rows[1]["test/closed_acc"]) <= 1.0 and float(rows[1]["seconds"]) > 0
    out = capsys.readouterr().out
    assert out.startswith("2 jobs: 1 ok, 1 failed; best val/closed_acc") and "data.batch_size=4" in out
    assert "(selected on validation); its test/closed_acc = " in out
    # one swept parameter, one plot (of the one finished job), linked from sweep.md
    assert sorted(p.name for p in tmp_path.glob("sweep_*.png")) == ["sweep_data.batch_size.png"]
    assert min(png_size(tmp_path / "sweep_data.batch_size.png")) > 100
    assert "![sweep_data.batch_size](sweep_data.batch_size.png)" in (tmp_path / "sweep.md").read_text()
    # report.html compares the finished jobs, each named by its swept values; the failed one is left out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["data.batch_size=4"] and report["shared"] == 8
    assert (tmp_path / "report.html").read_text().count('<th class="run-col">') == 1


@pytest.mark.slow
def test_a_two_by_two_sweep_gathers_four_rows(tmp_path, data_dir):
    _multirun(tmp_path, data_dir, "stage.lr=1e-3,3e-3", "seed=1,2")
    markdown = sweep(tmp_path)
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    # Hydra records swept floats in decimal form
    assert {(r["stage.lr"], r["seed"]) for r in rows} == {
        ("0.001", "1"),
        ("0.001", "2"),
        ("0.003", "1"),
        ("0.003", "2"),
    }
    assert markdown.startswith("4 jobs: 4 ok, 0 failed")
    # a plot per swept parameter
    assert sorted(p.name for p in tmp_path.glob("sweep_*.png")) == ["sweep_seed.png", "sweep_stage.lr.png"]
    assert all(min(png_size(p)) > 100 for p in tmp_path.glob("sweep_*.png"))
