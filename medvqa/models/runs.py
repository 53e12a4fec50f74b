"""A finished run's model again, from its folder (`config.yaml` + `adapter/`): for inference, evaluation and
export after training.

    from medvqa.models import load_base, load_run

    base = load_base(run_dir)  # VLM: the base model and processor, as the run's `model:` config built them
    vlm = load_run(run_dir)    # VLM: the base with the run's adapter applied (eval mode)
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from medvqa.models.builders import VLM


def run_config(run_dir: str | Path, adapter: bool = False) -> DictConfig:
    """`run_dir/config.yaml` of a finished run (unresolved), after checking the folder is one: every command
    that takes `run=` (evaluate, predict, export, app) calls this, so a wrong folder gets the same one-line
    user error everywhere. `adapter`: the run's `adapter/` must be there too."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(
            f"run={run_dir} has no config.yaml: point run= at a finished run's folder (python -m medvqa.run "
            "writes config.yaml, adapter/, metrics.json)"
        )
    if adapter and not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"run={run_dir} has no adapter/adapter_config.json: a peft=none run keeps its weights only in "
            "checkpoints/; use a LoRA/DoRA run"
        )
    return OmegaConf.load(run_dir / "config.yaml")


def load_base(run_dir: str | Path) -> VLM:
    """The base model and processor of the run in `run_dir`, rebuilt from `run_dir/config.yaml`'s `model`
    (the tiny models are rebuilt from their seed; hub models load from their id or folder)."""
    return instantiate(run_config(run_dir).model)


def load_run(run_dir: str | Path) -> VLM:
    """`load_base(run_dir)` with the run's `adapter/` applied through peft, in eval mode."""
    from peft import PeftModel

    run_config(run_dir, adapter=True)
    adapter = Path(run_dir) / "adapter"
    base = load_base(run_dir)
    model = PeftModel.from_pretrained(base.model, str(adapter)).eval()
    return VLM(model=model, processor=base.processor, family=base.family)
