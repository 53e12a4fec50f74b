"""The results table printed at the end of a run: each metric before and after training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SHOWN = ("closed_acc", "closed_exact", "hedged", "open_recall", "token_f1", "exact_match", "loss")


def results_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="test split (fractions; papers print x100)")
    table.add_column("metric")
    columns = [c for c in ("untrained", "test") if c in metrics]
    for c in columns:
        table.add_column("trained" if c == "test" else c, justify="right")
    for key in SHOWN:
        values = [metrics[c].get(f"test/{key}") for c in columns]
        if any(v is not None for v in values):
            table.add_row(key, *("-" if v is None else f"{v:.3f}" for v in values))
    return table


def skipped_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per evaluated split that left questions out (unreadable images): its scores' denominator."""
    lines = []
    for split in ("val", "test"):
        values = metrics.get(split, {})
        skipped, scored = int(values.get(f"{split}/skipped", 0)), int(values.get(f"{split}/scored", 0))
        if skipped:
            lines.append(f"{split}: {skipped} of {skipped + scored} questions skipped (unreadable images); "
                         f"scores are over {scored}")  # fmt: skip
    return lines


def print_results(metrics: dict[str, Any], out: Path) -> None:
    console = Console()
    console.print(results_table(metrics))
    if metrics.get("visual_reliance"):
        console.print(visual_table(metrics["visual_reliance"]))
    for line in skipped_lines(metrics):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"outputs: {out}")


def split_table(record: dict[str, Any], split: str) -> Table:
    """One split's values with their bootstrap 95% intervals and the questions behind each."""
    values, ci = record.get(split, {}), record.get(f"{split}_ci", {})
    units = sorted({f"{c['unit']}" for c in ci.values() if "unit" in c})
    resampled = f"; intervals resample {', '.join(units)} clusters" if units else ""
    table = Table(title=f"{split} split (fractions; papers print x100{resampled})")
    for name, justify in (("metric", "left"), ("value", "right"), ("95% CI", "right"), ("n", "right"),
                          ("clusters", "right")):  # fmt: skip
        table.add_column(name, justify=justify)
    for key in sorted(values, key=lambda k: (k.split("/", 1)[1] not in SHOWN, k)):
        name = key.split("/", 1)[1]
        if name in ("scored", "skipped"):
            continue
        interval = ci.get(name)
        span = f"[{interval['low']:.3f}, {interval['high']:.3f}]" if interval else "-"
        n, clusters = (str(interval["n"]), str(interval.get("n_clusters", "-"))) if interval else ("-", "-")
        table.add_row(name, f"{values[key]:.3f}", span, n, clusters)
    return table


def visual_table(record: dict[str, Any]) -> Table:
    """Scores with real, blank, swapped and no images, the visual reliance score (real minus the best
    image-free condition) and image sensitivity (answers changed by blanking or swapping), overall and per
    question type, with their cluster intervals."""
    modes = [m for m in ("real", "blank", "swapped", "none") if m in record["scores"]]
    ci = record.get("reliance_ci") or {}
    unit = f", {ci['unit']} intervals" if ci else ""
    table = Table(title=f"visual reliance ({record['split']}{unit}): reliance = real minus the best of blank / "
                        "none; sensitivity = share of answers changed by blank or swapped images")  # fmt: skip
    for name in ("questions", "metric", *modes, "reliance", "sensitivity"):
        table.add_column(name, justify="left" if name in ("questions", "metric") else "right")

    def cells(entry: dict[str, Any], scores: dict[str, Any], metric: str) -> list[str]:
        reliance = entry.get("reliance", {}).get(metric)
        interval = entry.get("reliance_ci") if metric == "closed_acc" else None
        shown = "-" if reliance is None else f"{reliance:+.3f}" + (_span(interval) if interval else "")
        sens = entry.get("sensitivity", {}).get("any")
        return [*(f"{scores[m].get(metric, 0.0):.3f}" for m in modes), shown,
                "-" if not sens else f"{sens['mean']:.3f}{_span(sens, signed=False)}"]  # fmt: skip

    for metric in ("closed_acc", "open_recall", "exact_match"):
        if metric in record["scores"]["real"]:
            table.add_row("all", metric, *cells(record, record["scores"], metric))
    for qtype, entry in record["by_question_type"].items():
        metric = "closed_acc" if "closed_acc" in entry["real"] else "open_recall"
        if metric in entry["real"]:
            table.add_row(f"{qtype} (n={entry['n']})", metric, *cells(entry, entry, metric))
    return table


def _span(interval: dict[str, Any], signed: bool = True) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f" [{f.format(interval['low'])}, {f.format(interval['high'])}]"


def print_evaluation(record: dict[str, Any], split: str, out: Path) -> None:
    """The end of `python -m medvqa.evaluate`: the split's table, visual reliance, answer-file counts."""
    console = Console()
    console.print(split_table(record, split))
    if record.get("visual_reliance"):
        console.print(visual_table(record["visual_reliance"]))
    counts = record.get("predictions")
    if counts:
        console.print(f"{counts['file']}: {counts['matched']} of {counts['lines']} answers matched split={split}; "
                      f"{counts['unmatched']} unmatched ids left out, {counts['missing']} questions without an "
                      "answer scored as wrong", highlight=False, soft_wrap=True)  # fmt: skip
    for line in skipped_lines({split: record.get(split, {})}) if split in ("val", "test") else []:
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"outputs: {out}")
