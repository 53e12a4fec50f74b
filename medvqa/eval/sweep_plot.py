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


# a learning rate is swept on a log scale whatever its range (stage.lr, stage.optimizer.lr, learning_rate)
LOG_NAMES = re.compile(r"(^|[._])(lr|learning_rate)($|[._])")
MAX_CATEGORIES = 12  # integer knobs with more distinct values than this stay on a numeric axis


def axis_kind(param: str, xs: list[Any]) -> str:
    """How a swept parameter's axis is drawn: `category` (evenly spaced, labelled by value) for text and for
    integer knobs such as `seed`; `log` for a positive range spanning 10x or more, or a learning rate by
    name; else `linear`."""
    if not all(isinstance(x, float) for x in xs):
        return "category"
    distinct = set(xs)
    if all(x.is_integer() for x in xs) and len(distinct) <= MAX_CATEGORIES and not LOG_NAMES.search(param):
        return "category"
    if min(xs) > 0 and (max(xs) >= 10 * min(xs) or LOG_NAMES.search(param)):
        return "log"
    return "linear"


def tick_label(x: Any) -> str:
    """A short tick label: 1e-4, 3e-4, 1e-3 (not 0.0001), 0.01, 0.5, 2; integers as integers; text as is."""
    if not isinstance(x, float):
        return str(x)
    if x.is_integer() and abs(x) < 1e6:
        return str(int(x))
    if x != 0 and not 1e-2 <= abs(x) < 1e4:
        mantissa, exponent = f"{x:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{x:g}"


def sweep_figure(rows: list[dict[str, Any]], param: str, metric: str):
    """A matplotlib Figure of `metric` of every finished job against `param` (axis as `axis_kind` says, ticks
    at the swept values when there are few), or None when no job logged the metric."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs, ys = series(rows, param, metric)
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    kind = axis_kind(param, xs)
    values = list(dict.fromkeys(xs))  # distinct, in series order (sorted numbers, first-seen text)
    if kind == "category":
        ax.plot([values.index(x) for x in xs], ys, "o", alpha=0.8)
        ax.set_xticks(range(len(values)), [tick_label(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    else:
        ax.plot(xs, ys, "o", alpha=0.8)
        if kind == "log":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if len(values) <= 8:
            ax.set_xticks(values, [tick_label(v) for v in values])
            ax.minorticks_off()
        else:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: tick_label(float(x))))
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param} ({len(xs)} runs)", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def _file_name(param: str) -> str:
    return "sweep_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", param) + ".png"


def plot_sweep(
    rows: list[dict[str, Any]], swept: list[str], metric: str, out_dir: Path
) -> tuple[list[Path], str | None]:
    """One PNG per swept parameter, `<out_dir>/sweep_<param>.png` (`sweep_figure`). Returns (files
    written, a note saying why something was not plotted, or None)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a cluster node
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "no plot: matplotlib is not installed (pip install -e '.[sweep]')"
    written: list[Path] = []
    for param in swept:
        fig = sweep_figure(rows, param, metric)
        if fig is None:
            continue
        path = Path(out_dir) / _file_name(param)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    note = None if written else f"no plot: no finished job logged {metric}"
    return written, note
