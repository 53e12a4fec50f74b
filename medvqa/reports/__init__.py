"""Comparison reports of finished runs (`python -m medvqa.report compare`; pipelines and sweeps call
`write_report` for their stages / jobs). Layout:

- runs.py     reading run folders (metrics.json, predictions.jsonl, config.yaml, CSV log), config-diff labels
- compare.py  the numbers: intervals, paired differences, McNemar; markdown and rich tables
- gallery.py  which test items to show and their embedded thumbnails
- charts.py   matplotlib figures as embedded PNGs
- html.py     the self-contained HTML page (templates/report.html.j2)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medvqa.data.errors import DataError
from medvqa.eval.stats import N_BOOT
from medvqa.io import atomic_write_json, atomic_write_text

log = logging.getLogger("medvqa")


def write_report(
    run_dirs: list[Path],
    out: Path,
    names: list[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    gallery: int = 48,
    unit: str = "patient",
) -> dict[str, Any]:
    """Compare `run_dirs` (the first is the baseline) and write `out` (HTML) plus `out` with .md and
    .json suffixes; intervals and tests resample `unit` clusters (eval.ci_unit's choices). Returns the
    comparison (what the .json holds)."""
    from medvqa.reports.compare import by_id, compare, shared_ids, to_markdown
    from medvqa.reports.html import context, render
    from medvqa.reports.runs import RunFolderError, label_runs, load_run, unique_names

    if not run_dirs:
        raise RunFolderError("compare: name at least one run folder")
    if names is not None and len(names) != len(run_dirs):
        raise RunFolderError(f"--names gives {len(names)} names for {len(run_dirs)} runs; give one per run")
    runs = [load_run(Path(d), n) for d, n in zip(run_dirs, names or [None] * len(run_dirs), strict=True)]
    for run, name in zip(runs, unique_names([r.name for r in runs]), strict=True):
        run.name = name
    label_runs(runs)
    result = compare(runs, n_boot=n_boot, seed=seed, unit=unit)
    ids = shared_ids(runs)
    html = render(context(runs, result, [by_id(r, ids) for r in runs], ids, gallery))
    out = Path(out)
    atomic_write_text(out, html)
    atomic_write_text(out.with_suffix(".md"), to_markdown(result))
    atomic_write_json(out.with_suffix(".json"), result)
    return result


def write_report_quietly(run_dirs: list[Path], out: Path, names: list[str] | None = None) -> Path | None:
    """`write_report` for the end of a pipeline or sweep: the training results are already written, so a
    report that cannot be made (no finished run, runs sharing no question) is a warning, not a failure."""
    try:
        write_report(run_dirs, out, names)
    except (DataError, OSError) as e:  # RunFolderError is a DataError
        log.warning("no comparison report %s: %s", out, e)
        return None
    log.info("comparison report: %s", out)
    return Path(out)
