"""Sweep plots: which points go on each parameter's plot, the files, and the report without matplotlib."""

from __future__ import annotations

import json
import sys

from experiment_helpers import png_size
from omegaconf import OmegaConf

from medvqa.eval.sweep_plot import plot_sweep, series
from medvqa.report import sweep

ROWS = [
    {"status": "ok", "stage.lr": "0.003", "model": "b", "val/acc": 0.5},
    {"status": "failed", "stage.lr": "0.0001", "model": "a"},  # no metric: left out
    {"status": "ok", "stage.lr": "0.001", "model": "a", "val/acc": 0.75},
    {"status": "ok", "stage.lr": "1e-05", "model": "a", "val/acc": 0.25},
]


def test_series_sorts_numbers_and_keeps_text_in_order_leaving_out_unfinished_jobs():
    assert series(ROWS, "stage.lr", "val/acc") == ([1e-5, 0.001, 0.003], [0.25, 0.75, 0.5])
    assert series(ROWS, "model", "val/acc") == (["b", "a", "a"], [0.5, 0.75, 0.25])
    assert series(ROWS, "stage.lr", "test/acc") == ([], [])


def test_one_png_per_swept_parameter(tmp_path):
    plots, note = plot_sweep(ROWS, ["stage.lr", "model"], "val/acc", tmp_path)
    assert [p.name for p in plots] == ["sweep_stage.lr.png", "sweep_model.png"] and note is None
    assert all(min(png_size(p)) > 100 for p in plots)
    assert plot_sweep(ROWS, ["stage.lr"], "test/acc", tmp_path) == (
        [],
        "no plot: no finished job logged test/acc",
    )


def _fake_multirun(root):
    """Two job folders as Hydra and medvqa.run write them (overrides + metrics), for the report alone."""
    for num, lr, acc in [(0, "0.001", 0.5), (1, "0.002", 0.75)]:
        (root / str(num) / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"stage.lr={lr}"]), root / str(num) / ".hydra" / "overrides.yaml")
        (root / str(num) / "metrics.json").write_text(json.dumps({"test": {"test/closed_acc": acc}}))


def test_the_report_writes_its_tables_and_says_so_when_matplotlib_is_missing(tmp_path, monkeypatch):
    _fake_multirun(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    markdown = sweep(tmp_path)
    assert markdown.startswith("2 jobs: 2 ok, 0 failed; best test/closed_acc = 0.75 at stage.lr=0.002")
    assert markdown.rstrip().endswith("no plot: matplotlib is not installed (pip install -e '.[sweep]')")
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 3 and not list(tmp_path.glob("*.png"))


def test_the_report_names_the_optuna_best(tmp_path):
    _fake_multirun(tmp_path)
    OmegaConf.save(
        OmegaConf.create({"name": "optuna", "best_params": {"stage.lr": 0.002}, "best_value": 0.75}),
        tmp_path / "optimization_results.yaml",
    )
    markdown = sweep(tmp_path)
    assert "\nOptuna best: 0.75 at stage.lr=0.002\n" in markdown
    assert "![sweep_stage.lr](sweep_stage.lr.png)" in markdown and (tmp_path / "sweep_stage.lr.png").is_file()
