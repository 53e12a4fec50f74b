"""`python -m medvqa.report sweep <multirun dir>`: one table of every job of a sweep (markdown + CSV).

Writes <dir>/sweep.md and <dir>/sweep.csv and prints the markdown. No plot yet: matplotlib is not a
dependency of medvqa (the CSV loads into any plotting tool).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvqa.eval.sweep import gather, to_csv, to_markdown
from medvqa.io import atomic_write_text


def sweep(multirun_dir: Path, best_by: str | None = "test/closed_acc") -> str:
    rows, swept, metric_keys = gather(multirun_dir)
    markdown = to_markdown(rows, swept, metric_keys, best_by)
    atomic_write_text(Path(multirun_dir) / "sweep.md", markdown)
    atomic_write_text(Path(multirun_dir) / "sweep.csv", to_csv(rows, swept, metric_keys))
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medvqa.report")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("sweep", help="gather a multirun folder into sweep.md and sweep.csv")
    p.add_argument("multirun_dir", type=Path)
    p.add_argument("--best-by", default="test/closed_acc", help="metric named in the header line (max)")
    args = parser.parse_args(argv)
    print(sweep(args.multirun_dir, args.best_by))
    print(f"written: {args.multirun_dir / 'sweep.md'}, {args.multirun_dir / 'sweep.csv'}")


if __name__ == "__main__":
    main()
