"""Which conf/experiment files need a stage kind this checkout does not have yet (dpo / grpo)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from medvqa.run import CONF_DIR

EXPERIMENTS = sorted((CONF_DIR / "experiment").glob("*.yaml"))
# fast settings for every stage: tiny model, 60 images, 2 steps with one validation, 8 test questions
TINY = ["model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "data.eval_batch_size=8", "trainer.val_check_interval=2", "stage.max_new_tokens=4",
        "data.limit={val: 4, test: 8}", "callbacks.progress_bar=null", "eval_untrained=false"]  # fmt: skip


def stage_kinds(path: Path) -> set[str]:
    """Stage kinds an experiment file names: `override /stage: X` in its defaults and its pipeline kinds."""
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    kinds = {
        str(d["override /stage"])
        for d in cfg.get("defaults", [])
        if isinstance(d, dict) and "override /stage" in d
    }
    stages = (cfg.get("pipeline") or {}).get("stages") or []
    return kinds | {str(s.get("kind", "sft")) for s in stages}


def missing_kinds(path: Path) -> list[str]:
    return sorted(k for k in stage_kinds(path) if not (CONF_DIR / "stage" / f"{k}.yaml").is_file())
