"""Wrapping a model with a peft adapter (LoRA / DoRA / QLoRA configs come from conf/peft/), and the
reference policy of the preference / RL stages (`stage.reference`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import PeftConfig, PeftModel, get_peft_model

REFERENCES = ("init", "base")
REFERENCE_ADAPTER = "reference"  # the frozen second copy of stage.init_adapter


def apply_peft(model, config: PeftConfig | None, init_adapter: str | None = None, reference: bool = False):
    """`config=None` (peft=none) trains the full model. `init_adapter` continues from a saved adapter
    (an earlier stage's run_dir/adapter) instead of a fresh one; its weights stay trainable. With
    `reference`, the same adapter is loaded a second time, frozen, as adapter `reference` (TRL's
    "ref" adapter): the starting policy, for `reference_pass`."""
    if init_adapter:
        path = Path(init_adapter)
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"stage.init_adapter={init_adapter} has no adapter_config.json; point it at a run's adapter/ folder"
            )
        model = PeftModel.from_pretrained(model, str(path), is_trainable=True)
        if reference:
            model.load_adapter(str(path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        return model
    if config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    return get_peft_model(model, config)


def check_reference(reference: str) -> str:
    if reference not in REFERENCES:
        raise ValueError(
            f"stage.reference={reference!r}: choose init (the starting policy: stage.init_adapter, frozen) "
            "or base (the model with its adapter switched off)"
        )
    return reference


def trained_adapters(model) -> list[str]:
    """The adapters a run saves: all but the frozen reference (so adapter/ loads as the default adapter)."""
    return [name for name in model.peft_config if name != REFERENCE_ADAPTER]


@contextmanager
def reference_pass(model, reference: str = "init") -> Iterator[None]:
    """Inside `with`, `model` computes the reference policy, in eval mode (no dropout: the reference is a
    fixed function), with no second copy of the base weights:

    - `init` with a loaded `reference` adapter (stage.init_adapter): that frozen copy of the starting adapter
      is switched on instead of the trained one;
    - `init` without one (a fresh adapter, which is the identity), or `base`: the adapter is switched off.
    Afterwards the trained adapter is active again, with every parameter's requires_grad as before."""
    was_training = model.training
    model.eval()
    try:
        if reference == "init" and REFERENCE_ADAPTER in getattr(model, "peft_config", {}):
            trained, trainable = model.active_adapter, {p for p in model.parameters() if p.requires_grad}
            model.set_adapter(REFERENCE_ADAPTER)
            try:
                yield
            finally:
                model.set_adapter(trained)  # peft's set_adapter also marks the adapters' requires_grad
                for p in model.parameters():
                    p.requires_grad_(p in trainable)
        else:
            with model.disable_adapter():
                yield
    finally:
        model.train(was_training)
