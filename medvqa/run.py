"""`python -m medvqa.run [overrides]`: compose -> build -> (score untrained) -> fit -> test -> write outputs.

The run directory holds: config.yaml (resolved), adapter/ (peft save_pretrained), predictions.jsonl,
metrics.json (deterministic: no times), run_info.json (times, counts), checkpoints/, csv/ logs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import DictConfig, OmegaConf, open_dict

from medvqa.callbacks.batch_size_finder import accumulation_for
from medvqa.callbacks.early_stopping import stopped_early
from medvqa.cli import quiet_lightning, user_errors
from medvqa.eval.evaluation import evaluate_split, score_split
from medvqa.eval.report import print_results
from medvqa.eval.stats import check_unit
from medvqa.io import atomic_write_json, atomic_write_jsonl, save_adapter
from medvqa.models.freeze import freeze_parts, warn_vision_adapters
from medvqa.models.peft import apply_peft
from medvqa.models.qlora import check_quantization
from medvqa.pipeline import run_pipeline

log = logging.getLogger("medvqa")
ROOT_DIR = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT_DIR / "conf"


def compose_config(overrides: list[str], output_dir: str | Path | None = None) -> DictConfig:
    """The config `python -m medvqa.run overrides` would see, for tests and benchmarks (no Hydra run dir:
    `paths.output_dir` is set to `output_dir` and everything is resolved)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
        OmegaConf.resolve(cfg)
    return cfg


def build(cfg: DictConfig):
    """Model (+adapter), datamodule and stage module from the composed config. The data is read first: a
    wrong data.root is reported in seconds, not after a 7B model has loaded."""
    datamodule = instantiate(cfg.data)
    datamodule.setup()  # reads and checks every record (idempotent: Lightning's own setup call is a no-op)
    vlm = instantiate(cfg.model)
    datamodule.processor = vlm.processor
    stage_cfg = OmegaConf.to_container(cfg.stage, resolve=True)
    init_adapter = stage_cfg.pop("init_adapter", None)
    stage_cfg.pop(
        "monitor", None
    )  # the run's default optimized_metric (conf/train.yaml), not a module argument
    # DPO, and GRPO with beta > 0, compare with the starting policy: a frozen copy of init_adapter
    reference = stage_cfg.get("reference") == "init" and bool(stage_cfg.get("beta"))
    model = apply_peft(vlm.model, instantiate(cfg.peft) if cfg.get("peft") else None, init_adapter, reference)
    freeze_parts(model, vlm.freeze)  # model.freeze: nothing in those parts trains (adapter weights included)
    module = instantiate(stage_cfg, model=model, processor=vlm.processor)
    return model, datamodule, module


def make_trainer(cfg: DictConfig, **overrides) -> L.Trainer:
    # a null entry (callbacks.progress_bar=null) switches that callback or logger off
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, **({"callbacks": callbacks, "logger": loggers or False} | overrides))
    if cfg.get("effective_batch_size"):  # micro-batch x accumulation x devices = effective_batch_size
        trainer.accumulate_grad_batches = accumulation_for(
            cfg.effective_batch_size, cfg.data.batch_size, trainer.world_size
        )
    return trainer


def evaluate_untrained(cfg: DictConfig, module, datamodule) -> dict[str, float]:
    """Test-split scores before any training, on a throw-away trainer (no logger, no checkpoints)."""
    log.info("scoring the untrained model on test (%d questions)", len(datamodule.splits.get("test", [])))
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    return {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}


def absolute_paths(cfg: DictConfig) -> None:
    """`paths.*` and `data.root` as absolute paths, in place, before anything reads them: config.yaml then
    names the folders the run really used, so the app, predict and export read the run's own data from
    any folder (a relative `./data/synthetic` would be another folder, or a new copy, elsewhere)."""
    with open_dict(cfg):
        for key in ("paths.root_dir", "paths.data_dir", "paths.output_dir", "data.root"):
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
            if isinstance(value, str) and value:
                OmegaConf.update(cfg, key, os.path.abspath(os.path.expanduser(value)), merge=False)


def train(cfg: DictConfig) -> dict[str, Any]:
    started = time.time()
    absolute_paths(cfg)
    out = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    check_quantization(cfg.model.get("quantization"))  # peft=qlora on a machine without CUDA stops here
    check_unit((cfg.get("eval") or {}).get("ci_unit", "patient"))  # a typo stops here, not after training
    trainer = make_trainer(cfg)  # first: a config the machine cannot run (precision=fp8 on CPU) stops here
    ckpt_path = resume_path(cfg)
    model, datamodule, module = build(cfg)
    metrics: dict[str, Any] = {}
    if cfg.get("eval_untrained"):
        metrics["untrained"] = evaluate_untrained(cfg, module, datamodule)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics |= evaluate_weights(cfg, trainer, module, datamodule)
    weights = "best" if metrics["weights"] == "best" else None
    for logger in trainer.loggers:  # remote loggers get records only with logger.<name>.log_samples=true
        if getattr(logger, "log_samples", False):
            logger.log_predictions(module.predictions)
    model_state = gathered_model_state(trainer)  # under FSDP a collective: every rank takes part
    if trainer.is_global_zero:
        _write_outputs(cfg, out, model, module, metrics, datamodule, started, weights, model_state,
                       stopped_early(trainer))  # fmt: skip
        print_results(metrics, out)
        if datamodule.skipped_summary():
            print(datamodule.skipped_summary())
    trainer.strategy.barrier("run outputs written")  # a pipeline's next stage on any rank reads this adapter
    return metrics


def evaluate_weights(cfg: DictConfig, trainer: L.Trainer, module, datamodule) -> dict[str, Any]:
    """val and test scores of one set of weights, named: the best checkpoint by the monitor when
    `test_weights=best` and one was kept, else the weights training ended with. (The last validation during
    fit may be of other weights: the best is often earlier, the last validation before the last steps.) Also
    the decoding config evaluation used."""
    best = cfg.get("test_weights") == "best" and _has_best(trainer)
    log.info("scoring the %s weights on val and test (%d + %d questions)", "best" if best else "last",
             len(datamodule.splits.get("val", [])), len(datamodule.splits.get("test", [])))  # fmt: skip
    ckpt = "best" if best else None
    # the re-validation goes to metrics.json only: the loggers' curves keep the validations of training
    loggers, trainer.loggers = trainer.loggers, []
    try:
        validated = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    finally:
        trainer.loggers = loggers
    val = _split_metrics(validated, trainer, "val/")
    # the test split through the path `python -m medvqa.evaluate` takes (medvqa/eval/evaluation.py):
    # test, test_ci, scorer (and visual_reliance with eval.visual_reliance=true)
    record, rows = evaluate_split(lambda: score_split(trainer, module, datamodule, "test", ckpt), "test",
                                  cfg.get("eval") or {}, datamodule)  # fmt: skip
    module.predictions = rows  # visual reliance re-ran the test loop: the rows written are the real images'
    return {
        "weights": "best" if best else "last",
        "checkpoint": Path(trainer.checkpoint_callback.best_model_path).name if best else None,
        "generation": generation_record(module),
        "val": val,
    } | record


def generation_record(module) -> dict[str, Any]:
    """The decoding config evaluation used, as metrics.json records it (set keys only)."""
    generation = module.eval_generation_config().to_dict()
    return {k: v for k, v in generation.items() if v is not None and not k.startswith("_")
            and k != "transformers_version"}  # fmt: skip


def _split_metrics(results: list[dict], trainer: L.Trainer, prefix: str) -> dict[str, float]:
    # metrics written by callbacks after the stage logged (val/composite) are not in the loop's results
    metrics = {k: float(v) for k, v in results[0].items()}
    return metrics | {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def resume_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` continues this run dir's checkpoints/last.ckpt; a missing one is an error, not a
    silent fresh start (Lightning only warns). A SLURM job that was requeued continues its last.ckpt."""
    ckpt_path = cfg.get("ckpt_path")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if ckpt_path == "last":
        if not last.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last but {last} does not exist; resume in the killed run's folder: "
                "python -m medvqa.run hydra.run.dir=<that run dir> ckpt_path=last (same overrides as before)"
            )
        return str(last)
    if ckpt_path is None and os.environ.get("SLURM_RESTART_COUNT", "0") != "0" and last.is_file():
        log.info("SLURM requeued this job: resuming from %s", last)  # saved by callbacks.preemption
        return str(last)
    return ckpt_path


def _has_best(trainer: L.Trainer) -> bool:
    cb = trainer.checkpoint_callback
    return bool(cb is not None and getattr(cb, "best_model_path", ""))


def gathered_model_state(trainer: L.Trainer) -> dict[str, Any] | None:
    """Under FSDP each rank holds a shard of every weight, so the model itself cannot save a whole adapter:
    gather the full state dict (Lightning's FSDP full-state context) with the stage's `model.` prefix
    dropped. None for other strategies, whose model weights are whole on every rank."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    state = trainer.strategy.lightning_module_state_dict()
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _write_outputs(
    cfg, out: Path, model, module, metrics, datamodule, started, weights, model_state=None, stopped=None
) -> None:
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    if hasattr(model, "peft_config"):
        save_adapter(model, out / "adapter", model_state)
        warn_vision_adapters(model, f"{out / 'adapter'} written")
    atomic_write_jsonl(out / "predictions.jsonl", module.predictions)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "run_info.json", {
        "wall_seconds": round(time.time() - started, 1),
        "test_weights": weights or "last",
        "samples": {k: len(v) for k, v in datamodule.splits.items()},
        "skipped_while_reading": dict(datamodule.bad.skipped),  # reading, and training images each epoch
        "skipped_in_evaluation": {s: int(metrics[s].get(f"{s}/skipped", 0)) for s in ("val", "test")},
        "stopped_early": stopped,  # callbacks.early_stopping ended the fit before its budget: when and why
    })  # fmt: skip


def objective(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value a sweeper optimises: `optimized_metric`, a validation metric (a test/ one is refused:
    choosing on test and reporting test is selection on the evaluation set)."""
    if not name:
        return None
    if not name.startswith("val/"):
        raise ValueError(f"optimized_metric={name}: sweeps and Optuna select on validation, never on test; "
                         f"use val/{name.split('/', 1)[-1]} (the test score is reported beside it)")  # fmt: skip
    if name.startswith("val/") and not metrics.get("val"):
        # callbacks.final_validation validates every fit's end; only a run with validation switched off
        # (trainer.limit_val_batches=0, or callbacks without final_validation) gets here
        log.warning("optimized_metric=%s: no validation ran (trainer.limit_val_batches=0?), so the run returns "
                    "no objective", name)  # fmt: skip
        return None
    if name in metrics.get("val", {}):
        return metrics["val"][name]
    raise KeyError(f"optimized_metric={name} was not logged; logged: {sorted(metrics.get('val', {}))}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_lightning()
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        with user_errors():  # a user's mistake: its message and exit 1, no traceback (medvqa/cli.py)
            return objective(run(cfg), cfg.get("optimized_metric"))
    try:
        return objective(run(cfg), cfg.get("optimized_metric"))
    except Exception as e:  # one failed job of a sweep is recorded in its folder and the sweep goes on
        log.exception("sweep job %s failed", HydraConfig.get().job.num)
        atomic_write_json(Path(cfg.paths.output_dir) / "failed.json", {"error": f"{type(e).__name__}: {e}"})
        if OmegaConf.select(cfg, "pipeline.until_stage") is not None:
            raise  # a chained SLURM stage job (medvqa/slurm.py): failing cancels the stages after it (afterok)
        # no value: hydra-optuna-sweeper 1.3 then marks the trial failed and goes on (a NaN makes it tell Optuna
        # 2.10 "failed" with a value, which raises and ends the search); the basic sweeper ignores it
        return None


def run(cfg: DictConfig) -> dict[str, Any]:
    """A multi-stage pipeline when the config lists one (medvqa/pipeline.py), else a single training run."""
    return run_pipeline(cfg, train) if cfg.get("pipeline") else train(cfg)


if __name__ == "__main__":
    main()
