"""`python -m medvqa.evaluate [run=<dir>] [model=...] [adapter=<dir>] [split=test] [predictions=<file>]`

Scores a run's adapter, any peft adapter, a base model zero-shot, or an answer file made elsewhere on one
split of any dataset, through the scoring path the end of training uses (medvqa/eval/evaluation.py), so
`evaluate run=<run>` gives that run's metrics.json test values. conf/evaluate.yaml (the train tree plus
run / adapter / split / predictions), docs/evaluation.md.

Writes to hydra.run.dir: metrics.json (`<split>`, `<split>_ci`, `scorer`, `generation`, `calibration`, and
`visual_reliance` / `predictions` where they apply), predictions.jsonl (one row per question),
breakdown.json (every metric per question type, organ, modality, answer type, source, with intervals),
answers.jsonl (a LLaVA-Med answer file) and the same answers as other harnesses read them
(lmms_eval_samples.jsonl, medevalkit_results.json, vlmevalkit_predictions.xlsx / .tsv;
medvqa/eval/harness_files.py), and prints the results table. predictions= reads any of those layouts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from medvqa.cli import override_key, quiet_lightning, user_errors

log = logging.getLogger("medvqa")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SPLITS = ("test", "val", "train")
# what a run folder's config.yaml decides, unless the command line chooses it: a key, and the override
# keys that choose it (a group such as data=slake takes the composed section whole)
FROM_RUN = {"model": ("model",), "data": ("data",), "stage": ("stage",),
            "trainer.precision": ("precision", "trainer", "trainer.precision")}  # fmt: skip


def compose_evaluate(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """The config `python -m medvqa.evaluate overrides` uses, for tests (paths.output_dir = output_dir)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return with_run(cfg, overrides)


def with_run(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """`cfg` with the run folder's model / data / stage / precision (FROM_RUN) in place of the composed
    defaults, then the command line's keys inside them (data.root=... on the run's data) applied again;
    resolved. Without run=, `cfg` resolved."""
    if not cfg.get("run"):
        OmegaConf.resolve(cfg)
        return cfg
    from medvqa.models.runs import run_config

    run_cfg = run_config(cfg.run)
    keys = [override_key(o) for o in overrides if not o.startswith("hydra.")]
    OmegaConf.resolve(cfg)
    for section, choosers in FROM_RUN.items():
        if any(k in choosers for k in keys) or OmegaConf.select(run_cfg, section) is None:
            continue  # chosen on the command line (or a run without it): the composed value stands
        value = OmegaConf.create({"v": OmegaConf.select(run_cfg, section)}).v
        for key, override in zip(keys, overrides, strict=False):
            if key.startswith(f"{section}."):
                inner = key[len(section) + 1 :]
                if override.startswith("~"):
                    value.pop(inner, None)
                else:
                    OmegaConf.update(value, inner, OmegaConf.select(cfg, key), force_add=True)
        with open_dict(cfg):
            OmegaConf.update(cfg, section, value, merge=False, force_add=True)
    return cfg


def adapter_dir(cfg: DictConfig) -> Path | None:
    """The adapter to apply: adapter=, else run=<dir>/adapter, else none (zero-shot)."""
    if cfg.get("adapter"):
        path, key = Path(cfg.adapter), f"adapter={cfg.adapter}"
    elif cfg.get("run"):
        path, key = Path(cfg.run) / "adapter", f"run={cfg.run}"
    else:
        return None
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{key}: {path} holds no peft adapter (adapter_config.json); point adapter= at a saved adapter "
            "folder (a run's adapter/), or leave it out to score the base model zero-shot"
        )
    return path


def split_samples(cfg: DictConfig, datamodule) -> list:
    split = cfg.split
    if split not in SPLITS:
        raise ValueError(f"split={split}: choose one of {', '.join(SPLITS)}")
    samples = datamodule.splits.get(split) or []
    if not samples:
        raise ValueError(
            f"split={split} of data.root={cfg.data.root} holds no questions; choose another split"
        )
    return samples


def read_data(cfg: DictConfig):
    """The datamodule, set up (every record read and checked, before any model loads), with a non-empty
    `split`; read once and handed to every step of the evaluation."""
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    split_samples(cfg, datamodule)
    return datamodule


def score_model(cfg: DictConfig, datamodule) -> tuple[dict[str, Any], list[dict[str, Any]], list | None]:
    """Generate and score the split with the model (+ adapter) through the stage's test loop; with
    eval.calibrate or a guard, the validation split too (its rows are the third value, else None)."""
    from peft import PeftModel

    from medvqa.eval.evaluation import evaluate_split, score_split
    from medvqa.run import generation_record

    L.seed_everything(cfg.seed, workers=True)
    adapter = adapter_dir(cfg)
    vlm = instantiate(cfg.model)
    model = vlm.model if adapter is None else PeftModel.from_pretrained(vlm.model, str(adapter))
    datamodule.processor = vlm.processor
    stage_cfg = OmegaConf.to_container(cfg.stage, resolve=True)
    for key in ("init_adapter", "monitor"):  # training-only keys: the adapter is already applied
        stage_cfg.pop(key, None)
    module = instantiate(stage_cfg, model=model.eval(), processor=vlm.processor)
    trainer = eval_trainer(cfg)
    record, rows = evaluate_split(
        lambda: score_split(trainer, module, datamodule, cfg.split), cfg.split, cfg.eval, datamodule
    )
    val_rows = None
    if cfg.eval.get("calibrate") or _guarded(cfg):  # temperature and guard thresholds: fitted on val
        val_rows = score_split(trainer, module, datamodule, "val")[1] if datamodule.splits.get("val") else []
    return (
        record
        | {
            "generation": generation_record(module),
            "adapter": str(adapter) if adapter else None,
        },
        rows,
        val_rows,
    )


def _guarded(cfg: DictConfig) -> bool:
    return cfg.get("guard") is not None and cfg.guard.mode != "off"


def eval_trainer(cfg: DictConfig) -> L.Trainer:
    """The configured trainer (accelerator, devices, precision) for evaluation only: a progress bar on the
    scoring loop (callbacks.progress_bar), no logger, no checkpoints."""
    bar = (cfg.get("callbacks") or {}).get("progress_bar")
    return instantiate(cfg.trainer, logger=False, callbacks=[instantiate(bar)] if bar else [],
                       enable_checkpointing=False, enable_model_summary=False,
                       enable_progress_bar=bool(bar))  # fmt: skip


def score_file(cfg: DictConfig, datamodule) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score an answer file (predictions=) against the split's questions; no model."""
    from medvqa.eval.answer_file import match_answers, read_answers
    from medvqa.eval.evaluation import evaluate_split, metrics_from_rows

    kind, entries = read_answers(cfg.predictions)
    rows, counts = match_answers(split_samples(cfg, datamodule), entries)
    if not counts["matched"]:
        raise ValueError(
            f"predictions={cfg.predictions}: none of its {counts['lines']} answers matches a question of "
            f"split={cfg.split} by id (ids look like {rows[0]['id']!r}) or by question and answer; check "
            "data=, data.root= and split="
        )
    metrics = metrics_from_rows(rows, cfg.split)
    record, rows = evaluate_split(lambda: (metrics, rows), cfg.split, cfg.eval)
    return record | {"predictions": {"file": str(cfg.predictions), "format": kind} | counts}, rows, None


def with_guard(cfg: DictConfig, record: dict[str, Any], rows: list[dict], val_rows: list[dict],
               temperature: float | None) -> tuple[dict, list[dict]]:  # fmt: skip
    """guard=patient|research: the record's `guard` (coverage and precision on the answered share with
    intervals vs unguarded, refusal rate on the shipped out-of-scope set; medvqa/guard/evaluation.py), decided
    on the scored rows (thresholds from the scored val rows), and each row's decision."""
    from medvqa.guard.evaluation import evaluate_guard, guard_line

    report, decisions = evaluate_guard(cfg, rows, val_rows, temperature)
    print(guard_line(report))
    rows = [r | decisions[r["id"]].fields() if r.get("id") in decisions else r for r in rows]
    return record | {"guard": report}, rows


def model_id(cfg: DictConfig) -> str:
    """The answer file's model_id: the answer file, run, adapter or model that answered."""
    for key in ("predictions", "run", "adapter"):
        if cfg.get(key):
            return Path(str(cfg[key])).name
    return str(cfg.model.get("name_or_path") or f"tiny_{cfg.model.get('family', 'model')}")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score cfg.split as configured, write the outputs to paths.output_dir, print the table; returns
    the metrics.json record."""
    from medvqa.eval.breakdown import breakdown
    from medvqa.eval.calibration import calibration_line
    from medvqa.eval.evaluation import check_text_metrics
    from medvqa.eval.harness_files import write_all
    from medvqa.eval.llava_med import write_answer_file
    from medvqa.eval.protocols import scorer as protocol_scorer
    from medvqa.eval.report import print_evaluation
    from medvqa.eval.stats import check_unit
    from medvqa.io import atomic_write_json, atomic_write_jsonl

    check_text_metrics(list(cfg.eval.get("text_metrics") or []))  # no Java: refused before any model loads
    protocol_scorer(cfg.eval.get("protocol", "medvqa"))  # an unknown eval.protocol: refused before anything
    check_unit(cfg.eval.get("ci_unit", "patient"))
    guarded = _guarded(cfg)
    if guarded:
        from medvqa.guard.evaluation import check_guard

        check_guard(cfg)  # needs run=, no predictions=, the run's own model: refused before any scoring
    datamodule = read_data(cfg)
    record, rows, val_rows = (score_file if cfg.get("predictions") else score_model)(cfg, datamodule)
    record["calibration"], temperature = with_calibration(cfg, rows, val_rows)
    if guarded:
        record, rows = with_guard(cfg, record, rows, val_rows, temperature)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"split": cfg.split, "run": cfg.get("run")} | record
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    atomic_write_json(out / "metrics.json", record)
    atomic_write_jsonl(out / "predictions.jsonl", rows)
    # breakdown intervals resample the eval.ci_unit clusters, as <split>_ci does
    seed, unit = cfg.eval.get("seed", 0), cfg.eval.get("ci_unit", "patient")
    atomic_write_json(out / "breakdown.json", breakdown(rows, ci=True, seed=seed, unit=unit))
    write_answer_file(rows, out / "answers.jsonl", model_id(cfg))
    write_all(rows, out)  # the same answers in lmms-eval, MedEvalKit and VLMEvalKit layouts
    print_evaluation(record, cfg.split, out)
    print(calibration_line(record["calibration"], cfg.split))
    return record


def with_calibration(cfg: DictConfig, rows: list[dict], val_rows: list[dict] | None):
    """(metrics.json's `calibration`, the temperature confidences are read under: None when uncalibrated).
    With eval.calibrate and validation rows, a temperature is fitted on them and, when there were enough to
    fit it, stored in the run folder's calibration.json (the output folder's without run=); else a run's
    stored one is used."""
    from medvqa.eval.calibration import split_calibration, write_calibration
    from medvqa.inference.predictor import run_temperature

    n_boot, seed = cfg.eval.get("n_boot", 2000), cfg.eval.get("seed", 0)
    if cfg.eval.get("calibrate") and val_rows is not None:
        record = split_calibration(
            rows,
            val_rows,
            n_boot,
            seed,
            cfg.eval.get("calibrate_min_items", 20),
            cfg.eval.get("ci_unit", "patient"),
        )
        if not record["fit"]["fitted"]:  # nothing stored: the run stays uncalibrated (words only in the app)
            return record, None
        write_calibration(cfg.get("run") or cfg.paths.output_dir, record["fit"], source="evaluate")
        return record, record["fit"]["temperature"]
    unit = cfg.eval.get("ci_unit", "patient")
    return split_calibration(rows, None, n_boot, seed, ci_unit=unit), run_temperature(cfg.run) if cfg.get(
        "run"
    ) else None


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_lightning()
    with user_errors():  # a user's mistake: one Error line and exit 1 (medvqa/cli.py)
        evaluate(with_run(cfg, list(HydraConfig.get().overrides.task)))


if __name__ == "__main__":
    main()
