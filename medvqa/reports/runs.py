"""Reading finished run folders for a comparison: metrics.json, predictions.jsonl, config.yaml, CSV log.

A run folder is what `python -m medvqa.run` (or `python -m medvqa.evaluate`) writes; only metrics.json and
predictions.jsonl are required, everything else is optional and its absence leaves a section empty. A
pipeline folder (summary.json, stages/<n>_<name>/) stands for its last stage.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medvqa.data.errors import DataError

# config keys that name where a run was written or when, never what was run
_WHERE = ("paths.", "hydra.")


class RunFolderError(DataError):
    """A run folder (or a set of runs) a report cannot use; the message names the folder and the fix."""


@dataclass
class RunData:
    """One run as the report reads it. `rows` are predictions.jsonl rows (one per test question), `config`
    the flattened config.yaml ({dotted key: value}; {} when absent), `curves` the CSV log's rows."""

    name: str
    path: Path
    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, float]] = field(default_factory=list)
    label: list[str] = field(default_factory=list)  # this run's differing config keys, as key=value


def resolve_run_dir(path: Path) -> Path:
    """The folder holding predictions.jsonl: `path` itself, or a pipeline's last stage."""
    path = Path(path)
    if (path / "predictions.jsonl").is_file():
        return path
    summary = path / "summary.json"
    if summary.is_file():
        stages = json.loads(summary.read_text()).get("stages") or []
        if stages and (path / stages[-1]["dir"] / "predictions.jsonl").is_file():
            return path / stages[-1]["dir"]
    if not path.is_dir():
        raise RunFolderError(f"{path}: no such run folder; pass folders that `python -m medvqa.run` wrote")
    raise RunFolderError(
        f"{path} holds no predictions.jsonl: pass a finished run folder (python -m medvqa.run or "
        "python -m medvqa.evaluate writes metrics.json and predictions.jsonl at the end)"
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RunFolderError(f"{path} line {n} is not JSON ({e}); was the run interrupted?") from None
    if not rows:
        raise RunFolderError(f"{path} is empty: the run scored no test question")
    return rows


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf} of a nested dict; lists stay whole leaves (compared and shown as one value)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml flattened, with the run's own folder written as `<run>` so paths inside it compare
    equal across runs; {} when the folder has no config.yaml (an answer file scored elsewhere)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    own = str(run_dir.resolve())
    out = {}
    for key, value in flatten(tree).items():
        if isinstance(value, str) and own in value:
            value = value.replace(own, "<run>")
        out[key] = value
    return out


def read_curves(run_dir: Path) -> list[dict[str, float]]:
    """The Lightning CSV log (csv/metrics.csv, or the newest csv/version_*/metrics.csv) as rows of floats,
    empty cells left out; [] when the run kept no CSV log."""
    candidates = [run_dir / "csv" / "metrics.csv", *sorted(run_dir.glob("csv/version_*/metrics.csv"))[::-1]]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(row)
    return rows


def load_run(path: Path, name: str | None = None) -> RunData:
    run_dir = resolve_run_dir(path)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return RunData(
        name=name or default_name(Path(path)),
        path=run_dir,
        metrics=metrics,
        rows=read_rows(run_dir / "predictions.jsonl"),
        config=read_config(run_dir),
        curves=read_curves(run_dir),
    )


def default_name(path: Path) -> str:
    """The folder's name; a bare job number or stage folder keeps its parent's name too (`sweep/3`)."""
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.name.isdigit() else path.name


def unique_names(names: list[str]) -> list[str]:
    """Names as given, with `#2`, `#3` added to repeats so that every run has its own column."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value is not the same in every run (a key one run lacks counts as differing),
    excluding where-it-was-written keys; [] for a single run or when no run has a config."""
    present = [c for c in configs if c]
    if len(present) < 2:
        return []
    keys = dict.fromkeys(k for c in present for k in c)
    return [
        k for k in keys if not k.startswith(_WHERE) and len({_show(c.get(k, _Absent)) for c in present}) > 1
    ]


class _Absent:
    pass


def _show(value: Any) -> str:
    if value is _Absent:
        return "(absent)"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def label_runs(runs: list[RunData]) -> None:
    """Set each run's `label`: its value of every config key that differs between the runs (fp32 / fp16 /
    bf16 runs of one recipe: `trainer.precision=bf16-mixed`; different models: `model.name=...`)."""
    keys = differing_keys([r.config for r in runs])
    for run in runs:
        run.label = [f"{k}={_show(run.config.get(k, _Absent))}" for k in keys] if run.config else []
