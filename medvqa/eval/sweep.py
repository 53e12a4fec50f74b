"""Gathering a Hydra multirun folder into one table: each job's overrides, metrics, time and status.

The best job is chosen on validation, never on test: by the sweep's `optimized_metric` (a `val/...` key,
read from the jobs' configs), with the test score of that job shown beside it. Choosing by test and
reporting the same test score is selection on the evaluation set: the number is optimistic by construction.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def job_dirs(multirun_dir: Path) -> list[Path]:
    """Every job folder under a sweep (those holding .hydra/overrides.yaml), in job-number order."""
    found = [p.parent.parent for p in Path(multirun_dir).rglob(".hydra/overrides.yaml")]
    return sorted(found, key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else 0, str(p)))


def job_row(job: Path, root: Path) -> dict[str, Any]:
    """job, status (ok | failed | incomplete), each override as its own column, seconds, error, metrics."""
    overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    row: dict[str, Any] = {"job": str(job.relative_to(root)) or "."}
    row |= dict(o.lstrip("+~").split("=", 1) if "=" in o else (o, "") for o in overrides)
    metrics = _json(job / "metrics.json")
    failed = _json(job / "failed.json")
    row["status"] = "failed" if failed else "ok" if metrics else "incomplete"
    row["seconds"] = _seconds(job)
    row["error"] = (failed or {}).get("error", "")
    for split in ("test", "val"):
        row |= {k: v for k, v in sorted((metrics or {}).get(split, {}).items())}
    return row


def job_selection(multirun_dir: Path) -> tuple[str, str]:
    """(optimized_metric, monitor_mode) of the sweep's jobs (their .hydra/config.yaml), else the defaults
    (val/closed_acc, max)."""
    for job in job_dirs(multirun_dir):
        path = job / ".hydra" / "config.yaml"
        if path.is_file():
            cfg = OmegaConf.load(path)
            metric = OmegaConf.select(cfg, "optimized_metric", throw_on_resolution_failure=False)
            mode = OmegaConf.select(cfg, "monitor_mode", throw_on_resolution_failure=False)
            if isinstance(metric, str) and "${" not in metric:
                return metric, mode if mode in ("max", "min") else "max"
    return "val/closed_acc", "max"


def check_selection(best_by: str) -> None:
    """Selection reads validation only: a test/ metric to choose by is refused, naming the val/ one."""
    if not best_by.startswith("val/"):
        name = best_by.split("/", 1)[-1]
        raise ValueError(
            f"optimized_metric={best_by} (--best-by): a sweep selects on validation, never on test; choose by "
            f"val/{name} (its test score is shown beside it)"
        )


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _seconds(job: Path) -> float | None:
    info = _json(job / "run_info.json")
    if info:
        return info.get("wall_seconds")
    summary = _json(job / "summary.json")  # a pipeline: the sum over its stages
    if summary:
        return round(sum(s.get("seconds") or 0.0 for s in summary["stages"]), 1)
    return None


def gather(multirun_dir: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(rows, swept keys, metric keys): one row per job; swept keys are overrides that differ across jobs."""
    root = Path(multirun_dir)
    jobs = job_dirs(root)
    if not jobs:
        raise FileNotFoundError(
            f"{root} holds no Hydra job folders (.hydra/overrides.yaml); pass a multirun/<date>/<time> folder"
        )
    rows = [job_row(j, root) for j in jobs]
    fixed = {"job", "status", "seconds", "error"}
    # validation first (what selection reads), test beside it
    metric_keys = sorted(
        {k for r in rows for k in r if k.startswith(("test/", "val/"))}, key=lambda k: (k[0] == "t", k)
    )
    override_keys = [
        k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed and k not in metric_keys
    ]
    swept = [k for k in override_keys if len({str(r.get(k)) for r in rows}) > 1] or override_keys
    return rows, swept, metric_keys


def columns(swept: list[str], metric_keys: list[str]) -> list[str]:
    return ["job", *swept, "status", "seconds", *metric_keys, "error"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_job(rows: list[dict], best_by: str, mode: str = "max") -> dict | None:
    """The finished job with the best validation `best_by` (min for a loss); ties: the first job."""
    ok = [r for r in rows if r["status"] == "ok" and r.get(best_by) is not None]
    if not ok:
        return None
    pick = min if mode == "min" else max
    return pick(ok, key=lambda r: r[best_by])


def to_markdown(
    rows: list[dict], swept: list[str], metric_keys: list[str], best_by: str | None = None, mode: str = "max"
) -> str:
    """The table, headed by the job counts and the job selected on validation `best_by` with its test
    score beside it; the selected job is marked in the `selected` column."""
    best = best_job(rows, best_by, mode) if best_by else None
    cols = ["selected", *columns(swept, metric_keys)]
    marked = [r | {"selected": "best val" if r is best else ""} for r in rows]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "/") for c in cols) + " |" for r in marked]
    ok = [r for r in rows if r["status"] == "ok"]
    head = f"{len(rows)} jobs: {len(ok)} ok, {sum(r['status'] == 'failed' for r in rows)} failed"
    if best is not None:
        test_key = "test/" + best_by.split("/", 1)[1]
        where = ", ".join(f"{k}={best.get(k)}" for k in swept)
        test = _cell(best.get(test_key)) or "not logged"
        head += (f"; best {best_by} = {_cell(best[best_by])} at {where} (selected on validation); "
                 f"its {test_key} = {test} (test is reported, never used to choose)")  # fmt: skip
    return head + "\n\n" + "\n".join(lines) + "\n"


def to_csv(rows: list[dict], swept: list[str], metric_keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns(swept, metric_keys), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
