"""Plots of one metric against each swept parameter of a sweep (basic grid or Optuna search).

matplotlib is optional (the `sweep` extra): `plot_sweep` returns no files and a one-line note without it,
so the markdown and CSV tables never depend on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def as_number(value: Any) -> float | None:
    """A swept value as a float (Hydra records `stage.lr=0.001`, `seed=2`); None for a non-number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def series(rows: list[dict[str, Any]], param: str, metric: str) -> tuple[list[Any], list[float]]:
    """(x, y) for the jobs that finished and logged `metric`, sorted by x: numbers where every x is one
    (a numeric axis), else the values as text in first-seen order (a categorical axis)."""
    points = [
        (r.get(param), r[metric]) for r in rows if r.get("status") == "ok" and r.get(metric) is not None
    ]
    if points and all(as_number(x) is not None for x, _ in points):
        pairs = sorted((as_number(x), float(y)) for x, y in points)
        return [x for x, _ in pairs], [y for _, y in pairs]
    return [str(x) for x, _ in points], [float(y) for _, y in points]


def _file_name(param: str) -> str:
    return "sweep_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", param) + ".png"


def plot_sweep(
    rows: list[dict[str, Any]], swept: list[str], metric: str, out_dir: Path
) -> tuple[list[Path], str | None]:
    """One PNG per swept parameter, `<out_dir>/sweep_<param>.png`: `metric` of every finished job against
    the parameter's value (log x axis for a positive numeric range spanning 10x or more, such as a
    learning rate). Returns (files written, a note saying why something was not plotted, or None)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a cluster node
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "no plot: matplotlib is not installed (pip install -e '.[sweep]')"
    written: list[Path] = []
    for param in swept:
        xs, ys = series(rows, param, metric)
        if not xs:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        numeric = all(isinstance(x, float) for x in xs)
        if numeric and min(xs) > 0 and max(xs) >= 10 * min(xs):
            ax.set_xscale("log")
        ax.plot(xs, ys, "o", alpha=0.8)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {param} ({len(xs)} runs)", fontsize=9)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        path = Path(out_dir) / _file_name(param)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    note = None if written else f"no plot: no finished job logged {metric}"
    return written, note
