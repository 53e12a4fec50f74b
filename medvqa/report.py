"""`python -m medvqa.report sweep|compare`: reports of finished runs (docs/report.md).

- `sweep <multirun dir>`: one table of every job of a sweep, the best job chosen on validation (--best-by,
  default the jobs' optimized_metric; a test/ metric is refused) with its test score beside it. Writes
  <dir>/sweep.md, <dir>/sweep.csv, <dir>/sweep_<param>.png (the --best-by metric against each swept
  parameter; needs matplotlib, the `sweep` extra) and <dir>/report.html comparing the finished jobs; prints
  the markdown.
- `compare RUN_A RUN_B ... [--out report.html] [--names a,b] [--ci-unit patient]`: on the questions the runs
  share, each metric with a cluster bootstrap 95% interval, the paired difference against RUN_A (paired
  cluster bootstrap, cluster permutation p with Holm's correction) and exact McNemar tests on closed
  questions; refuses runs scored by different protocols; prints the tables, writes the HTML report plus
  report.md and report.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console

from medvqa.cli import user_errors
from medvqa.eval.stats import CI_UNITS, N_BOOT
from medvqa.eval.sweep import check_selection, gather, job_selection, to_csv, to_markdown
from medvqa.eval.sweep_plot import plot_sweep
from medvqa.io import atomic_write_text
from medvqa.reports import write_report, write_report_quietly
from medvqa.reports.compare import rich_tables


def sweep(multirun_dir: Path, best_by: str | None = None, mode: str | None = None) -> str:
    """The sweep's table, report and plots; the best job is chosen by `best_by` on validation (default:
    the jobs' optimized_metric and monitor_mode), never on test (medvqa/eval/sweep.py)."""
    default_metric, default_mode = job_selection(Path(multirun_dir))
    best_by, mode = best_by or default_metric, mode or default_mode
    check_selection(best_by)
    rows, swept, metric_keys = gather(multirun_dir)
    markdown = to_markdown(rows, swept, metric_keys, best_by, mode)
    markdown += optuna_best(Path(multirun_dir), default_metric)
    plots, note = plot_sweep(rows, swept, best_by, multirun_dir) if best_by else ([], None)
    markdown += "".join(f"\n![{p.stem}]({p.name})\n" for p in plots) + (f"\n{note}\n" if note else "")
    atomic_write_text(Path(multirun_dir) / "sweep.md", markdown)
    atomic_write_text(Path(multirun_dir) / "sweep.csv", to_csv(rows, swept, metric_keys))
    finished = [r for r in rows if r["status"] == "ok"]
    names = [", ".join(f"{k}={r.get(k)}" for k in swept) or r["job"] for r in finished]
    write_report_quietly(
        [Path(multirun_dir) / r["job"] for r in finished], Path(multirun_dir) / "report.html", names
    )
    return markdown


def optuna_best(multirun_dir: Path, objective: str = "val/closed_acc") -> str:
    """The best trial of an Optuna search (hparams_search=...), as the sweeper wrote it, and the
    validation metric it maximised (the trials' optimized_metric, `objective`); '' otherwise."""
    path = multirun_dir / "optimization_results.yaml"
    if not path.is_file():
        return ""
    results = OmegaConf.load(path)
    if "best_params" not in results:  # a multi-objective search writes its Pareto front instead
        return f"\nOptuna: see {path.name}\n"
    params = ", ".join(f"{k}={v}" for k, v in results.best_params.items())
    return (
        f"\nOptuna best: {results.best_value:.4g} at {params} (its objective: {objective}, on validation)\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medvqa.report")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("sweep", help="gather a multirun folder into sweep.md and sweep.csv")
    p.add_argument("multirun_dir", type=Path)
    p.add_argument("--best-by", default=None,
                   help="validation metric the best job is chosen by and plotted (default: the jobs' optimized_metric)")  # fmt: skip
    p.add_argument("--mode", choices=["max", "min"], default=None,
                   help="how --best-by improves (min: a loss; default: the jobs' monitor_mode)")  # fmt: skip
    c = commands.add_parser(
        "compare", help="compare finished runs (the first is the baseline): HTML + md + JSON"
    )
    c.add_argument("runs", nargs="+", type=Path, help="run folders (python -m medvqa.run / medvqa.evaluate)")
    c.add_argument(
        "--out", type=Path, default=Path("report.html"), help="the HTML file; .md and .json beside it"
    )
    c.add_argument(
        "--names", default=None, help="comma-separated column names, one per run (default: folders)"
    )
    c.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (same seed, same intervals)")
    c.add_argument("--gallery", type=int, default=48, help="test items shown in the gallery")
    c.add_argument("--ci-unit", choices=list(CI_UNITS), default="patient",
                   help="what intervals and tests resample (as eval.ci_unit): patient (else image) | image | question")  # fmt: skip
    args = parser.parse_args(argv)
    with user_errors():
        if args.command == "sweep":
            print(sweep(args.multirun_dir, args.best_by, args.mode))
            written = ", ".join(str(args.multirun_dir / f) for f in ("sweep.md", "sweep.csv", "report.html"))
            print(f"written: {written}, sweep_<param>.png")
        else:
            compare(args)


def compare(args: argparse.Namespace) -> None:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    result = write_report(
        args.runs,
        args.out,
        names,
        n_boot=args.n_boot,
        seed=args.seed,
        gallery=args.gallery,
        unit=args.ci_unit,
    )
    console = Console()
    for table in rich_tables(result):
        console.print(table)
    out = args.out
    console.print(f"written: {out}, {out.with_suffix('.md')}, {out.with_suffix('.json')}", highlight=False)


if __name__ == "__main__":
    main()
