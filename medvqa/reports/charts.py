"""The report's figures, drawn with matplotlib and returned as PNG data: URIs (embedded, no files).

matplotlib is optional (the `sweep` extra, which `make install` installs): without it every function
returns None and the report says why in place of the figure.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from medvqa.reports.runs import RunData

# one colour per run, the same in every figure and in the HTML's run chips (matplotlib's tab10)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")  # fmt: skip
CURVES = ("train/loss", "val/loss", "val/closed_acc", "val/open_recall")
CATEGORY_METRICS = ("closed_acc", "open_recall")
MAX_CATEGORIES = 12
NO_MATPLOTLIB = "no figure: matplotlib is not installed (pip install -e '.[sweep]')"


def colour(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def available() -> bool:
    """matplotlib can be imported (else every figure is None)."""
    return _pyplot() is not None


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a cluster node
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _uri(fig, plt) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def training_curves(runs: list[RunData]) -> str | None:
    """train/loss, val/loss and validation accuracy against step, one line per run; None when no run has
    a CSV log (or matplotlib is missing)."""
    plt = _pyplot()
    fig = curves_figure(runs, plt) if plt is not None else None
    return None if fig is None else _uri(fig, plt)


def curves_figure(runs: list[RunData], plt):
    """The figure of `training_curves`. Every point gets a marker, so a validation run only a few times
    (trainer.val_check_interval, one validation per epoch) shows its points instead of a lone invisible
    dot; every panel spans the same steps from 0 to the last logged step, and accuracy panels 0 to 1."""
    from matplotlib.ticker import MaxNLocator

    panels = [key for key in CURVES if any(key in row for run in runs for row in run.curves)]
    if not panels:
        return None
    steps = [row["step"] for run in runs for row in run.curves if "step" in row]
    last = max(steps, default=0) or 1
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 2.7), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for k, run in enumerate(runs):
            points = [(row["step"], row[key]) for row in run.curves if key in row and "step" in row]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "o-", color=colour(k), label=run.name, lw=1.4, ms=3 if len(xs) > 20 else 4.5)
        ax.set_xlim(0, last * 1.04)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        values = [row[key] for run in runs for row in run.curves if key in row]
        if key.endswith("loss"):
            ax.set_ylim(bottom=min(0.0, *values))  # GRPO's loss can be negative
        else:  # accuracies and recalls are fractions
            ax.set_ylim(0, 1.05)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def metric_bars(result: dict[str, Any], names: list[str]) -> str | None:
    """The headline metrics per run as grouped bars with their 95% intervals as error bars."""
    plt = _pyplot()
    metrics = [m for m in result["metrics"] if m != "hedged"]
    if plt is None or not metrics:
        return None
    fig, ax = plt.subplots(figsize=(min(11, 1.6 + 1.3 * len(metrics) * max(1, len(names)) ** 0.5), 2.9))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        entries = [result["metrics"][m]["runs"][k] for m in metrics]
        means = [e["mean"] for e in entries]
        errors = [[e["mean"] - e["low"] for e in entries], [e["high"] - e["mean"] for e in entries]]
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, means, width * 0.92, yerr=errors, capsize=2, color=colour(k), label=name)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 1.05)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, ncol=min(6, len(names)), loc="lower left", bbox_to_anchor=(0, 1.0))
    fig.tight_layout()
    return _uri(fig, plt)


def category_bars(breakdowns: list[dict[str, Any]], names: list[str], key: str) -> str | None:
    """closed_acc and open_recall per category of `key` (the largest MAX_CATEGORIES), bars per run in the
    run colours (keyed by the table beside the chart, so no legend)."""
    plt = _pyplot()
    first = breakdowns[0].get(key, {})
    if plt is None or not first:
        return None
    categories = list(first)[:MAX_CATEGORIES]
    metrics = [m for m in CATEGORY_METRICS if any(m in first[c]["metrics"] for c in categories)]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(min(7.5, 1.2 + 0.45 * len(categories) * len(metrics) * max(1, len(names)) ** 0.5), 2.6),
                             squeeze=False)  # fmt: skip
    width = 0.8 / len(names)
    for ax, metric in zip(axes[0], metrics, strict=True):
        shown = [c for c in categories if metric in first[c]["metrics"]]
        for k, (name, table) in enumerate(zip(names, breakdowns, strict=True)):
            values = [
                table.get(key, {}).get(c, {}).get("metrics", {}).get(metric, {}).get("mean", 0.0)
                for c in shown
            ]
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(shown))]
            ax.bar(xs, values, width * 0.92, color=colour(k), label=name)
        ax.set_xticks(
            range(len(shown)),
            [c[:14] for c in shown],
            rotation=30 if len(shown) > 4 else 0,
            ha="right" if len(shown) > 4 else "center",
        )
        ax.set_ylim(0, 1.05)
        ax.set_title(metric)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _uri(fig, plt)


def reliability_points(run: RunData) -> dict[str, list[dict[str, Any]]]:
    """{"before": table, "after": table} of a run's closed-answer reliability (medvqa/eval/calibration.py),
    from its predictions.jsonl's option log-probabilities, `after` under the temperature its metrics.json's
    `calibration` fitted (absent when none was)."""
    from medvqa.eval.calibration import closed_confidences, reliability_table

    fit = (run.metrics.get("calibration") or {}).get("fit") or {}
    temperatures = {"before": 1.0} | ({"after": fit["temperature"]} if fit.get("fitted") else {})
    out = {}
    for label, t in temperatures.items():
        conf, right = closed_confidences(run.rows, t)
        if len(conf):
            out[label] = reliability_table(conf, right)
    return out


def reliability_diagram(runs: list[RunData]) -> str | None:
    """Accuracy against mean confidence per equal-mass bin, one line per run (dashed: after temperature
    scaling), the accuracy's exact 95% interval as error bars, and the diagonal a calibrated model follows;
    None when no run has closed-answer confidences (or matplotlib is missing)."""
    tables = [reliability_points(run) for run in runs]
    plt = _pyplot()
    if plt is None or not any(tables):
        return None
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":", label="calibrated")
    for k, (run, table) in enumerate(zip(runs, tables, strict=True)):
        for label, style in (("before", "o-"), ("after", "s--")):
            rows = table.get(label)
            if not rows:
                continue
            xs, ys = [r["confidence"] for r in rows], [r["accuracy"] for r in rows]
            err = [[y - r["accuracy_low"] for y, r in zip(ys, rows, strict=True)],
                   [r["accuracy_high"] - y for y, r in zip(ys, rows, strict=True)]]  # fmt: skip
            name = run.name if label == "before" else f"{run.name} (temperature-scaled)"
            ax.errorbar(xs, ys, yerr=err, fmt=style, color=colour(k), ms=3, lw=1.2, capsize=2, label=name)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("mean confidence (equal-mass bin)")
    ax.set_ylabel("accuracy (closed_acc)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    return _uri(fig, plt)
