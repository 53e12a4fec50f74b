"""Multi-stage pipelines (curriculum): stages run in order, each continuing from the previous stage's adapter.

An experiment sets (conf/experiment/exp4_curriculum.yaml is the worked example):

    pipeline:
      mode: sequential   # sequential: a stage trains on its own subset | cumulative: plus every earlier stage's
      max_steps: null    # caps every stage's trainer.max_steps (smoke run: pipeline.max_steps=2)
      stages:
        - name: easy                                   # its folder: stages/<n>_<name>
          kind: sft                                    # conf/stage/<kind>.yaml
          filters: {question_type: [MODALITY, PLANE]}  # data.filters of this stage (train and val; test stays whole)
          overrides: {trainer.max_steps: 300, stage.lr: 1.0e-3}   # dotted config keys
          init: previous                               # previous (default) | base | a path to an adapter folder

Each stage is a whole run (medvqa/run.py `train`) in its own folder (config.yaml, adapter/, metrics.json,
predictions.jsonl ...). The pipeline folder gets summary.md / summary.json (the test metrics after every
stage, always on the same unfiltered test split) and metrics.json (the last stage's, which a sweep reads).
A stage is finished when its folder holds metrics.json: running again in the same folder skips finished
stages and continues an interrupted one from its checkpoints/last.ckpt. `pipeline.until_stage=k` runs (or
skips, when finished) stages 1..k only and writes no summary: on SLURM each stage is its own job
(medvqa/slurm.py chains them with afterok), and the last stage's job writes the summary.
The pipeline folder's report.html compares the stages (python -m medvqa.report compare; docs/report.md).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from medvqa.eval.report import SHOWN
from medvqa.io import atomic_write_json, atomic_write_text
from medvqa.reports import write_report_quietly

log = logging.getLogger("medvqa")
STAGE_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "stage"
MODES = ("sequential", "cumulative")
_ABSENT = object()

Train = Callable[[DictConfig], dict[str, Any]]


def stage_plan(cfg: DictConfig) -> list[dict[str, Any]]:
    """The checked list of stages: name, kind, filters, overrides, init, dir (relative to the run dir)."""
    pipeline = cfg.pipeline
    if pipeline.get("mode", "sequential") not in MODES:
        raise ValueError(f"pipeline.mode={pipeline.mode}: use one of {', '.join(MODES)}")
    stages = OmegaConf.to_container(pipeline.stages, resolve=True)
    plan, names = [], set()
    for i, raw in enumerate(stages):
        where = f"pipeline.stages[{i}]"
        unknown = set(raw) - {"name", "kind", "filters", "overrides", "init"}
        if unknown:
            raise KeyError(
                f"{where}: unknown keys {sorted(unknown)}; a stage has name, kind, filters, overrides, init"
            )
        name, kind = str(raw.get("name") or f"stage{i + 1}"), raw.get("kind", "sft")
        if name in names:
            raise ValueError(f"{where}.name={name} is used twice; stage names name folders and must differ")
        if not (STAGE_CONF_DIR / f"{kind}.yaml").is_file():
            known = ", ".join(sorted(p.stem for p in STAGE_CONF_DIR.glob("*.yaml")))
            raise FileNotFoundError(f"{where}.kind={kind}: no conf/stage/{kind}.yaml; kinds: {known}")
        names.add(name)
        plan.append({"name": name, "kind": kind, "filters": raw.get("filters") or {},
                     "overrides": raw.get("overrides") or {}, "init": raw.get("init", "previous"),
                     "dir": f"stages/{i + 1}_{name}"})  # fmt: skip
    if not plan:
        raise ValueError("pipeline.stages is empty; list at least one stage")
    return plan


def stage_filters(cfg: DictConfig, plan: list[dict], i: int) -> dict | list[dict]:
    """data.filters for stage i: the run's own data.filters and the stage's (stage keys win); in cumulative
    mode a list (any of stages 0..i), which medvqa.data.filters.select reads as a union."""
    base = OmegaConf.to_container(cfg.data.filters, resolve=True) if cfg.data.get("filters") else {}
    own = [base | plan[j]["filters"] for j in range(i + 1)]
    return own if cfg.pipeline.get("mode", "sequential") == "cumulative" and i > 0 else own[-1]


def stage_config(cfg: DictConfig, plan: list[dict], i: int, out: Path) -> DictConfig:
    """The complete run config of stage i: kind, filters, overrides, step cap, starting adapter, folder."""
    stage, where = plan[i], f"pipeline.stages[{i}]"
    scfg = copy.deepcopy(cfg)
    with open_dict(scfg):
        kind_cfg = OmegaConf.load(STAGE_CONF_DIR / f"{stage['kind']}.yaml")
        if kind_cfg.get("_target_") != scfg.stage.get("_target_"):  # another kind: its own config file
            scfg.stage = kind_cfg
        scfg.data.filters = stage_filters(cfg, plan, i)
        for key, value in stage["overrides"].items():
            if OmegaConf.select(scfg, key, default=_ABSENT) is _ABSENT:
                raise KeyError(f"{where}.overrides: {key} is not a config key of this run (a typo?)")
            OmegaConf.update(scfg, key, value, merge=True)
        if cfg.pipeline.get("max_steps"):
            _cap_steps(scfg, int(cfg.pipeline.max_steps))
        scfg.stage.init_adapter = _init_adapter(cfg, plan, i, out)
        scfg.paths.output_dir = str(out / stage["dir"])
        scfg.eval_untrained = bool(cfg.get("eval_untrained")) and i == 0  # later: the previous stage's test
        last = out / stage["dir"] / "checkpoints" / "last.ckpt"
        scfg.ckpt_path = "last" if last.is_file() else None  # an interrupted stage goes on where it stopped
        scfg.pipeline = None
    return scfg


def _cap_steps(scfg: DictConfig, cap: int) -> None:
    """At most `cap` optimizer steps, still validating (and so checkpointing) once at the end."""
    steps = int(scfg.trainer.max_steps)
    scfg.trainer.max_steps = cap if steps < 0 else min(steps, cap)
    if isinstance(scfg.trainer.get("val_check_interval"), int):
        scfg.trainer.val_check_interval = min(scfg.trainer.val_check_interval, scfg.trainer.max_steps)


def _init_adapter(cfg: DictConfig, plan: list[dict], i: int, out: Path) -> str | None:
    init = plan[i]["init"]
    if init == "base":
        return None
    if init != "previous":
        return str(init)
    if i == 0:
        return cfg.stage.get("init_adapter")  # the run's own stage.init_adapter, if any
    previous = out / plan[i - 1]["dir"] / "adapter"
    if not (previous / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"pipeline.stages[{i}] starts from {previous}, which holds no adapter: chaining stages needs a peft "
            "adapter (peft=lora, not peft=none), or set init: base on this stage"
        )
    return str(previous)


def run_pipeline(cfg: DictConfig, train: Train) -> dict[str, Any]:
    """Run (or resume) every stage with `train`, then write and print the summary across stages. `cfg` is
    unresolved, as @hydra.main gives it, so that `${paths.output_dir}` follows each stage into its folder."""
    out = Path(cfg.paths.output_dir)
    plan = stage_plan(cfg)
    out.mkdir(parents=True, exist_ok=True)
    writer = rank_zero_only.rank == 0  # under DDP every rank runs the pipeline; rank 0 writes its files
    if writer:
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    until = cfg.pipeline.get("until_stage")
    if until is not None and not 1 <= int(until) <= len(plan):
        raise ValueError(f"pipeline.until_stage={until}: the pipeline has stages 1..{len(plan)}")
    results = []
    for i, stage in enumerate(plan[: int(until or len(plan))]):
        done = out / stage["dir"] / "metrics.json"
        if done.is_file():
            log.info(
                "pipeline: stage %d (%s) already finished in %s, skipped", i + 1, stage["name"], done.parent
            )
            metrics = json.loads(done.read_text())
        else:
            log.info("pipeline: stage %d/%d (%s, %s)", i + 1, len(plan), stage["name"], stage["kind"])
            (out / stage["dir"]).mkdir(parents=True, exist_ok=True)
            metrics = train(stage_config(cfg, plan, i, out))
        results.append(summary_row(stage, metrics, out))
    if len(results) < len(plan):  # a chained stage job (until_stage): the summary is the last job's
        return metrics
    summary = {"mode": cfg.pipeline.get("mode", "sequential"), "stages": results}
    if writer:
        atomic_write_json(out / "summary.json", summary)
        atomic_write_text(out / "summary.md", summary_markdown(results, *selection(cfg)))
        write_report_quietly([out / s["dir"] for s in plan], out / "report.html", [s["name"] for s in plan])
    last = json.loads((out / plan[-1]["dir"] / "metrics.json").read_text())
    metrics = {
        "val": last.get("val", {}),
        "test": last.get("test", {}),
        "stages": {r["name"]: r["test"] for r in results},
    }
    if "untrained" in results[0]:
        metrics["untrained"] = results[0]["untrained"]
    if writer:
        atomic_write_json(out / "metrics.json", metrics)
        Console().print(summary_table(results, *selection(cfg)))
    return metrics


def summary_row(stage: dict, metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    info_file = out / stage["dir"] / "run_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    row = {"name": stage["name"], "kind": stage["kind"], "dir": stage["dir"],
           "train_samples": info.get("samples", {}).get("train"), "seconds": info.get("wall_seconds"),
           "val": metrics.get("val", {}), "test": metrics.get("test", {})}  # fmt: skip
    if "untrained" in metrics:
        row["untrained"] = metrics["untrained"]
    return row


def _columns(results: list[dict]) -> list[str]:
    logged = {k.removeprefix("test/") for r in results for k in r["test"]}
    return [k for k in SHOWN if k in logged]


def selection(cfg: DictConfig) -> tuple[str, str]:
    """(optimized_metric, monitor_mode) the summary names its best stage by: a validation metric."""
    metric = OmegaConf.select(cfg, "optimized_metric", throw_on_resolution_failure=False)
    mode = OmegaConf.select(cfg, "monitor_mode", default="max", throw_on_resolution_failure=False)
    return (metric if isinstance(metric, str) and metric.startswith("val/") else "val/closed_acc"), mode


def best_stage(results: list[dict], metric: str, mode: str = "max") -> int | None:
    """Index of the stage with the best validation `metric` (min for a loss); None when none logged it.
    Test is never read here: choosing on test and reporting test is selection on the evaluation set."""
    scored = [(r.get("val", {}).get(metric), i) for i, r in enumerate(results)]
    scored = [(v, i) for v, i in scored if v is not None]
    if not scored:
        return None
    sign = -1 if mode == "min" else 1
    return max(scored, key=lambda vi: (sign * vi[0], -vi[1]))[1]


def _table_rows(results: list[dict], metric: str, mode: str = "max") -> list[list[str]]:
    """Stage | kind | train samples | validation `metric` | test metrics ...; a first `before training`
    row when it was scored; the stage best on validation marked."""
    cols, rows = _columns(results), []
    fmt = lambda m, k: "-" if m.get(f"test/{k}") is None else f"{m[f'test/{k}']:.3f}"  # noqa: E731
    if "untrained" in results[0]:
        rows.append(["(before training)", "-", "-", "-", *(fmt(results[0]["untrained"], k) for k in cols)])
    best = best_stage(results, metric, mode)
    for i, r in enumerate(results):
        n = "-" if r["train_samples"] is None else str(r["train_samples"])
        val = r.get("val", {}).get(metric)
        shown = "-" if val is None else f"{val:.3f}" + (" (best)" if i == best else "")
        rows.append([f"{i + 1}. {r['name']}", r["kind"], n, shown, *(fmt(r["test"], k) for k in cols)])
    return rows


def _selected(results: list[dict], metric: str, mode: str) -> str:
    best = best_stage(results, metric, mode)
    if best is None:
        return f"no stage logged {metric}"
    name = f"{best + 1}. {results[best]['name']}"
    return f"best stage on validation {metric}: {name}; test is reported, never used to choose"


def summary_markdown(results: list[dict], metric: str = "val/closed_acc", mode: str = "max") -> str:
    head = ["stage", "kind", "train samples", metric, *(f"test/{k}" for k in _columns(results))]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in _table_rows(results, metric, mode)]
    return (f"Validation {metric} and test metrics after each stage (same test split; fractions); "
            f"{_selected(results, metric, mode)}\n\n" + "\n".join(lines) + "\n")  # fmt: skip


def summary_table(results: list[dict], metric: str = "val/closed_acc", mode: str = "max") -> Table:
    table = Table(title=f"after each stage (same test split); {_selected(results, metric, mode)}")
    for i, col in enumerate(
        ["stage", "kind", "train samples", metric, *(f"test/{k}" for k in _columns(results))]
    ):
        table.add_column(col, justify="left" if i < 2 else "right")
    for row in _table_rows(results, metric, mode):
        table.add_row(*row)
    return table
