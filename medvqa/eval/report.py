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
    for line in skipped_lines(metrics):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"outputs: {out}")
