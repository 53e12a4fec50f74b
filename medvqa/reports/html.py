"""The self-contained HTML comparison report: one file, images and figures embedded as data: URIs, CSS
inline, no script and no external request (it opens from disk, offline, anywhere).

The page (templates/report.html.j2): the runs and what differs between their configs; the metrics table
with 95% intervals and the paired difference against the first run (significance marked); the metrics as
bars; breakdown tables and bar charts per question type, organ, modality, answer type and source (with
counts); training curves from each run's CSV log; a gallery of test items, disagreements first.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from medvqa.reports import charts
from medvqa.reports.charts import CATEGORY_METRICS
from medvqa.reports.compare import LOWER_IS_BETTER, better, significant
from medvqa.reports.gallery import MAX_ITEMS, gallery
from medvqa.reports.runs import RunData

TEMPLATES = Path(__file__).parent / "templates"
LABEL_SHOWN = 4  # differing config keys shown under a run's name; the rest fold away


def metric_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per metric: n and one cell per run {mean, low, high, delta, delta_low, delta_high, mark, cls}."""
    rows = []
    for metric, entry in result["metrics"].items():
        cells = []
        for k, interval in enumerate(entry["runs"]):
            cell = {"mean": interval["mean"], "low": interval["low"], "high": interval["high"]}
            diff = entry["diff"][k]
            if diff is not None:
                sig = significant(result, metric, k)
                good = better(metric, diff["mean"])
                cell |= {"delta": diff["mean"], "delta_low": diff["low"], "delta_high": diff["high"],
                         "mark": ("▲" if diff["mean"] > 0 else "▼") if sig else "",
                         "cls": ("good" if good else "bad") if sig else "ns"}  # fmt: skip
            cells.append(cell)
        pick = min if metric in LOWER_IS_BETTER else max
        best = pick(c["mean"] for c in cells)
        for c in cells:
            c["best"] = len(cells) > 1 and c["mean"] == best
        rows.append({"metric": metric, "n": entry["n"], "cells": cells})
    return rows


def headlines(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per compared run: its significant differences from the first run, [{metric, delta, cls}]."""
    out = []
    for k, run in enumerate(result["runs"][1:], 1):
        found = [{"metric": m, "delta": e["diff"][k]["mean"], "cls": "good" if better(m, e["diff"][k]["mean"]) else "bad"}
                 for m, e in result["metrics"].items() if significant(result, m, k)]  # fmt: skip
        out.append({"name": run["name"], "found": found})
    return out


def mcnemar_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": m, "tests": tests[1:]} for m, tests in result["mcnemar"].items()]


def breakdown_tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per grouping key with two or more categories (one category says nothing the headline does not):
    its categories (first run's order: largest first) with counts and per run the closed_acc /
    open_recall of that category; `metrics`: those of the two any category has."""
    tables = []
    first = result["breakdown"][0]
    for key, categories in first.items():
        if len(categories) < 2:
            continue
        rows = []
        for value, summary in categories.items():
            per_run = [b.get(key, {}).get(value, {"metrics": {}})["metrics"] for b in result["breakdown"]]
            n_closed = summary["metrics"].get("closed_acc", {}).get("n", 0)
            n_open = summary["metrics"].get("open_recall", {}).get("n", 0)
            cells = [{m: r[m]["mean"] for m in CATEGORY_METRICS if m in r} for r in per_run]
            rows.append(
                {"value": value, "n": summary["n"], "n_closed": n_closed, "n_open": n_open, "cells": cells}
            )
        metrics = [m for m in CATEGORY_METRICS if any(m in c for row in rows for c in row["cells"])]
        tables.append({"key": key, "rows": rows, "metrics": metrics})
    return tables


def context(runs: list[RunData], result: dict[str, Any], tables, ids, limit: int = MAX_ITEMS) -> dict:
    names = [r.name for r in runs]
    breakdowns = breakdown_tables(result)
    return {
        "title": f"medvqa comparison: {' vs '.join(names)}"
        if len(names) <= 4
        else f"medvqa: {len(names)} runs",
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "colour": charts.colour(k),
                "label": r.label[:LABEL_SHOWN],
                "label_more": r.label[LABEL_SHOWN:],
                "questions": len(r.rows),
                "weights": r.metrics.get("weights") or "",
                "checkpoint": r.metrics.get("checkpoint") or "",
            }
            for k, r in enumerate(runs)
        ],  # fmt: skip
        "result": result,
        "metric_rows": metric_rows(result),
        "mcnemar_rows": mcnemar_rows(result),
        "family": sum(d is not None for e in result["metrics"].values() for d in e["diff"]),
        "headlines": headlines(result),
        "metric_chart": charts.metric_bars(result, names),
        "breakdowns": [
            t | {"chart": charts.category_bars(result["breakdown"], names, t["key"])} for t in breakdowns
        ],
        "curves": charts.training_curves(runs),
        "reliability": charts.reliability_diagram(runs),
        "no_figure": "" if charts.available() else charts.NO_MATPLOTLIB,
        "gallery": gallery(runs, tables, ids, limit),
        "gallery_limit": limit,
    }


def render(ctx: dict[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["f3"] = lambda v: "–" if v is None else f"{v:.3f}"
    env.filters["s3"] = lambda v: f"{v:+.3f}"
    env.filters["heat"] = _heat
    return env.get_template("report.html.j2").render(**ctx)


def _heat(value: float | None) -> str:
    """A background from pale red (0) through pale yellow to pale green (1) for a score cell."""
    if value is None:
        return "transparent"
    hue = 120 * max(0.0, min(1.0, value))
    return f"hsl({hue:.0f} 70% 90%)"
