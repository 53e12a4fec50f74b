"""A finished run's model again, from its folder (`config.yaml` + `adapter/`): for inference, evaluation and
export after training.

    from medvqa.models import load_base, load_run

    base = load_base(run_dir)  # VLM: the base model and processor, as the run's `model:` config built them
    vlm = load_run(run_dir)    # VLM: the base with the run's adapter applied (eval mode)
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from medvqa.models.builders import VLM


def load_base(run_dir: str | Path) -> VLM:
    """The base model and processor of the run in `run_dir`, rebuilt from `run_dir/config.yaml`'s `model`
    (the tiny models are rebuilt from their seed; hub models load from their id or folder)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: point at a run folder (it holds config.yaml and adapter/)"
        )
    return instantiate(OmegaConf.load(path).model)


def load_run(run_dir: str | Path) -> VLM:
    """`load_base(run_dir)` with the run's `adapter/` applied through peft, in eval mode."""
    from peft import PeftModel

    adapter = Path(run_dir) / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter} holds no peft adapter (adapter_config.json); a peft=none run keeps its weights only "
            "in checkpoints/"
        )
    base = load_base(run_dir)
    model = PeftModel.from_pretrained(base.model, str(adapter)).eval()
    return VLM(model=model, processor=base.processor, family=base.family)
