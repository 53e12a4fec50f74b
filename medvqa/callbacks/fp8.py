"""precision=fp8: the linear layers' matmuls in float8 (torchao float8 training), the rest in bf16.

Why torchao and not Transformer Engine: torchao swaps `nn.Linear` modules in place (`Float8Linear`, same
parameters, so peft's LoRA wrappers, the optimizer and our checkpoints are untouched) and installs as a
plain wheel from PyPI (`pip install 'medvqa[fp8]'`); Transformer Engine needs its own CUDA build and
its own layer classes (te.Linear), which would mean rewriting the transformers models we load.

float8 matmuls need tensor cores that have them: NVIDIA compute capability 8.9 or newer (Ada: L4, L40,
RTX 4090; Hopper: H100, H200; Blackwell). Anywhere else the run stops at start-up with one line saying so;
there is no silent fallback to bf16. LoRA's low-rank matrices, small layers and the output head stay in
bf16 (too small to gain, and the head is sensitive); torchao needs both dimensions divisible by 16.
"""

from __future__ import annotations

import importlib.util
import logging

import lightning as L
import torch

log = logging.getLogger(__name__)
MIN_CAPABILITY = (8, 9)
NEEDS = (
    "precision=fp8 needs an NVIDIA GPU of compute capability 8.9 or newer (L4, L40, RTX 4090, H100, H200, "
    "B200) and torchao (pip install 'medvqa[fp8]')"
)


def fp8_unavailable_reason() -> str | None:
    """Why float8 training cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return "this machine has no CUDA GPU"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < MIN_CAPABILITY:
        return f"{torch.cuda.get_device_name()} has compute capability {major}.{minor}"
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed"
    return None


def convertible(
    module: torch.nn.Module, name: str, min_features: int = 64, skip: tuple[str, ...] = ()
) -> bool:
    """Whether `module` (named `name`) should run in float8: a Linear with both sides divisible by 16 and at
    least `min_features`, and no `skip` substring in its name."""
    if type(module) is not torch.nn.Linear:
        return False
    sizes = (module.in_features, module.out_features)
    return all(n % 16 == 0 and n >= min_features for n in sizes) and not any(s in name for s in skip)


class Float8Training(L.Callback):
    def __init__(self, min_features: int = 64, skip: list[str] | tuple[str, ...] = ("lora_", "lm_head")):
        reason = fp8_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{NEEDS}; {reason}. Use precision=bf16 on this machine.")
        self.min_features, self.skip = min_features, tuple(skip)
        self.converted = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not str(trainer.precision).startswith("bf16"):
            raise RuntimeError(
                f"precision=fp8 runs the non-float8 parts in bf16; got trainer.precision={trainer.precision}"
            )
        from torchao.float8 import convert_to_float8_training

        names = []

        def keep(module: torch.nn.Module, name: str) -> bool:
            ok = convertible(module, name, self.min_features, self.skip)
            names.append(name) if ok else None
            return ok

        convert_to_float8_training(pl_module.model, module_filter_fn=keep)
        self.converted += len(names)
        log.info("precision=fp8: %d linear layers train in float8 (torchao)", len(names))
