"""`python -m medvqa.report sweep <multirun dir>`: one table of every job of a sweep (markdown + CSV).

Writes <dir>/sweep.md, <dir>/sweep.csv and <dir>/sweep_<param>.png (the --best-by metric against each swept
parameter; needs matplotlib, the `sweep` extra) and prints the markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from medvqa.eval.sweep import gather, to_csv, to_markdown
from medvqa.eval.sweep_plot import plot_sweep
from medvqa.io import atomic_write_text


def sweep(multirun_dir: Path, best_by: str | None = "test/closed_acc", mode: str = "max") -> str:
    rows, swept, metric_keys = gather(multirun_dir)
    markdown = to_markdown(rows, swept, metric_keys, best_by, mode)
    markdown += optuna_best(Path(multirun_dir))
    plots, note = plot_sweep(rows, swept, best_by, multirun_dir) if best_by else ([], None)
    markdown += "".join(f"\n![{p.stem}]({p.name})\n" for p in plots) + (f"\n{note}\n" if note else "")
    atomic_write_text(Path(multirun_dir) / "sweep.md", markdown)
    atomic_write_text(Path(multirun_dir) / "sweep.csv", to_csv(rows, swept, metric_keys))
    return markdown


def optuna_best(multirun_dir: Path) -> str:
    """The best trial of an Optuna search (hparams_search=...), as the sweeper wrote it; '' otherwise."""
    path = multirun_dir / "optimization_results.yaml"
    if not path.is_file():
        return ""
    results = OmegaConf.load(path)
    if "best_params" not in results:  # a multi-objective search writes its Pareto front instead
        return f"\nOptuna: see {path.name}\n"
    params = ", ".join(f"{k}={v}" for k, v in results.best_params.items())
    return f"\nOptuna best: {results.best_value:.4g} at {params}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medvqa.report")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("sweep", help="gather a multirun folder into sweep.md and sweep.csv")
    p.add_argument("multirun_dir", type=Path)
    p.add_argument("--best-by", default="test/closed_acc", help="metric named in the header line and plotted")
    p.add_argument(
        "--mode", choices=["max", "min"], default="max", help="how --best-by improves (min: a loss)"
    )
    args = parser.parse_args(argv)
    print(sweep(args.multirun_dir, args.best_by, args.mode))
    print(f"written: {args.multirun_dir / 'sweep.md'}, {args.multirun_dir / 'sweep.csv'}, sweep_<param>.png")


if __name__ == "__main__":
    main()
