"""Wrapping a model with a peft adapter (LoRA / DoRA / QLoRA configs come from conf/peft/)."""

from __future__ import annotations

from pathlib import Path

from peft import PeftConfig, PeftModel, get_peft_model


def apply_peft(model, config: PeftConfig | None, init_adapter: str | None = None):
    """`config=None` (peft=none) trains the full model. `init_adapter` continues from a saved adapter
    (an earlier stage's run_dir/adapter) instead of a fresh one; its weights stay trainable."""
    if init_adapter:
        path = Path(init_adapter)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"stage.init_adapter={init_adapter} has no adapter_config.json; point it at a run's adapter/ folder"
            )
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    if config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    return get_peft_model(model, config)
