"""Sweep plots: which points go on each parameter's plot, the files, and the report without matplotlib."""

from __future__ import annotations

import json
import sys

import matplotlib.pyplot as plt
import pytest
from experiment_helpers import png_size
from omegaconf import OmegaConf

from medvqa.eval.sweep_plot import axis_kind, plot_sweep, series, sweep_figure
from medvqa.report import main as report_main
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


def _rows(param, values):
    return [{"status": "ok", param: str(v), "val/acc": 0.5 + 0.1 * i} for i, v in enumerate(values)]


def _axes(param, values):
    figure = sweep_figure(_rows(param, values), param, "val/acc")
    ax = figure.axes[0]
    figure.canvas.draw()  # tick labels are filled in at draw time
    plt.close(figure)
    return ax, [t.get_text() for t in ax.get_xticklabels()], list(ax.lines[0].get_xdata())


def test_log_spaced_learning_rates_get_a_log_axis_labelled_at_the_swept_values():
    ax, labels, _ = _axes("stage.lr", ["0.001", "1e-4", "3e-4"])
    assert ax.get_xscale() == "log" and labels == ["1e-4", "3e-4", "1e-3"]
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]  # no crowded minor labels
    ax, labels, _ = _axes("stage.optimizer.lr", ["1e-4", "2e-4"])  # under 10x, but a learning rate
    assert ax.get_xscale() == "log" and labels == ["1e-4", "2e-4"]
    ax, labels, _ = _axes("stage.beta", ["0.01", "0.1", "1.0"])  # spans 100x: log by its values
    assert ax.get_xscale() == "log" and labels == ["0.01", "0.1", "1"]


def test_integer_knobs_sit_evenly_on_a_categorical_axis():
    ax, labels, xs = _axes("seed", ["10", "1", "2"])
    assert ax.get_xscale() == "linear" and labels == ["1", "2", "10"] and xs == [0, 1, 2]
    ax, labels, xs = _axes("stage.temperature", ["0.5", "0.8", "1.0"])  # a plain range stays numeric
    assert ax.get_xscale() == "linear" and xs == [0.5, 0.8, 1.0]


def test_axis_kind_from_values_and_name():
    assert axis_kind("stage.lr", [1e-4, 2e-4]) == "log"
    assert axis_kind("learning_rate", [1e-4, 2e-4]) == "log"
    assert axis_kind("stage.epsilon_low", [0.1, 2.0]) == "log"
    assert axis_kind("stage.epsilon_low", [0.1, 0.3]) == "linear"
    assert axis_kind("stage.beta", [0.0, 0.1]) == "linear"  # a zero cannot sit on a log axis
    assert axis_kind("seed", [0.0, 1.0, 2.0]) == "category"
    assert axis_kind("model", ["a", "b"]) == "category"


def _fake_multirun(root, config: str | None = None):
    """Two job folders as Hydra and medvqa.run write them (overrides, config, metrics), for the report
    alone. Job 0 validates better (0.8 vs 0.6), job 1 tests better (0.75 vs 0.5)."""
    for num, lr, val, test in [(0, "0.001", 0.8, 0.5), (1, "0.002", 0.6, 0.75)]:
        (root / str(num) / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"stage.lr={lr}"]), root / str(num) / ".hydra" / "overrides.yaml")
        if config:
            (root / str(num) / ".hydra" / "config.yaml").write_text(config)
        metrics = {"test": {"test/closed_acc": test, "test/closed_exact": test},
                   "val": {"val/closed_acc": val, "val/closed_exact": 1 - val}}  # fmt: skip
        (root / str(num) / "metrics.json").write_text(json.dumps(metrics))


def test_the_best_job_is_chosen_on_validation_with_its_test_score_beside_it(tmp_path):
    _fake_multirun(tmp_path)
    markdown = sweep(tmp_path)
    assert markdown.startswith("2 jobs: 2 ok, 0 failed; best val/closed_acc = 0.8 at stage.lr=0.001 (selected on "
                               "validation); its test/closed_acc = 0.5 (test is reported, never used to choose)")  # fmt: skip
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    # validation columns first, test beside them; the selected job marked
    assert table[0].startswith(
        "| selected | job | stage.lr | status | seconds | val/closed_acc | val/closed_exact | test/"
    )
    assert table[2].startswith("| best val | 0 |") and table[3].startswith("|  | 1 |")


def test_the_jobs_optimized_metric_is_the_default_and_test_is_refused(tmp_path, capsys):
    """A sweep of runs monitoring val/closed_exact (DPO, GRPO) is judged by it: the config says so."""
    config = "stage:\n  monitor: val/closed_exact\noptimized_metric: ${stage.monitor}\nmonitor_mode: max\n"
    _fake_multirun(tmp_path, config)
    assert sweep(tmp_path).startswith("2 jobs: 2 ok, 0 failed; best val/closed_exact = 0.4 at stage.lr=0.002")
    with pytest.raises(SystemExit):
        report_main(["sweep", str(tmp_path), "--best-by", "test/closed_acc"])
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: optimized_metric=test/closed_acc (--best-by): a sweep selects on validation"
    )
    assert "val/closed_acc" in err and len(err.strip().splitlines()) == 1


def test_the_report_writes_its_tables_and_says_so_when_matplotlib_is_missing(tmp_path, monkeypatch):
    _fake_multirun(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    markdown = sweep(tmp_path)
    assert markdown.startswith("2 jobs: 2 ok, 0 failed; best val/closed_acc = 0.8 at stage.lr=0.001")
    assert markdown.rstrip().endswith("no plot: matplotlib is not installed (pip install -e '.[sweep]')")
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 3 and not list(tmp_path.glob("*.png"))


def test_the_report_names_the_optuna_best(tmp_path):
    _fake_multirun(tmp_path)
    OmegaConf.save(
        OmegaConf.create({"name": "optuna", "best_params": {"stage.lr": 0.001}, "best_value": 0.8}),
        tmp_path / "optimization_results.yaml",
    )
    markdown = sweep(tmp_path)
    assert "\nOptuna best: 0.8 at stage.lr=0.001 (its objective: val/closed_acc, on validation)\n" in markdown
    assert "![sweep_stage.lr](sweep_stage.lr.png)" in markdown and (tmp_path / "sweep_stage.lr.png").is_file()


def test_the_runs_objective_for_sweepers_and_optuna_is_a_validation_metric():
    """`python -m medvqa.run` returns optimized_metric to the sweeper (Optuna maximises it): read from
    validation only; a test/ name is refused before a search could select on test."""
    from medvqa.run import objective

    metrics = {"val": {"val/closed_acc": 0.6}, "test": {"test/closed_acc": 0.9}}
    assert objective(metrics, "val/closed_acc") == 0.6
    with pytest.raises(
        ValueError, match=r"optimized_metric=test/closed_acc: sweeps and Optuna select on valid"
    ):
        objective(metrics, "test/closed_acc")
