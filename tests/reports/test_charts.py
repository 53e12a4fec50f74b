"""The report's training curves: validations logged a few times (val_check_interval, once per epoch) are
drawn as marked points on axes that span the run's steps, not as a lone dot on an axis around one step."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from medvqa.reports.charts import curves_figure, training_curves  # noqa: E402
from medvqa.reports.runs import RunData  # noqa: E402


def _run(name: str, val_steps: list[int]) -> RunData:
    curves = [{"step": float(s), "train/loss": 3.0 / (1 + s)} for s in range(0, 41, 2)]
    curves += [{"step": float(s), "val/loss": 1.0, "val/closed_acc": 0.5 + s / 100} for s in val_steps]
    return RunData(name=name, path=Path(name), metrics={}, rows=[], curves=curves)


def test_one_validation_is_a_marked_point_on_the_runs_step_axis():
    fig = curves_figure([_run("a", [40]), _run("b", [20, 40])], plt)
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert set(panels) == {"train/loss", "val/loss", "val/closed_acc"}
    acc = panels["val/closed_acc"]
    single, double = acc.get_lines()
    assert list(single.get_xdata()) == [40.0] and single.get_marker() == "o" and single.get_markersize() >= 4
    assert double.get_marker() == "o"
    for ax in panels.values():  # every panel spans step 0 .. the last step, the same for all
        low, high = ax.get_xlim()
        assert low == 0 and 40 <= high <= 45
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert acc.get_ylim() == (0, 1.05) and panels["val/loss"].get_ylim()[0] == 0
    plt.close(fig)
    assert training_curves([_run("a", [40])]).startswith("data:image/png;base64,")
