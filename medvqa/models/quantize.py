"""Weight quantization for inference: int8 / int4 through transformers' own quantizer integrations.

    from medvqa.models.quantize import quantize_model, load_quantized

    model = quantize_model(model, "int8", "cpu")   # any transformers VLM (a peft model is merged first)
    model = load_quantized(folder, "int4", "cuda")  # a saved full-precision export, quantized on load

Which library does the work depends on the device, because neither runs everywhere:
- CUDA: bitsandbytes (`int8`: LLM.int8() Linear8bitLt; `int4`: 4-bit NF4 with bf16 compute);
- CPU:  torchao weight-only (`int8`: Int8WeightOnlyConfig, per-channel int8 weights; `int4`:
  IntxWeightOnlyConfig(int4, groups of 32)). torchao's packed int4 layouts need CUDA or Arm (KleidiAI)
  kernels, so on an x86 CPU int4 values are stored one per byte: int4 accuracy, int8 size.
Every nn.Linear is quantized except the output head (`lm_head`, transformers' default); embeddings and
norms stay in full precision, so on a tiny model they bound the size gain.

Both save with `save_pretrained` (safetensors; torchao tensors serialize through transformers' torchao
integration) and the folder's config.json records `quantization_config`: `AutoModelForImageTextToText.
from_pretrained(folder)` reloads the quantized model with torchao / bitsandbytes installed.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

FORMS = ("int8", "int4")
INT4_GROUP = 32  # torchao int4 group size: divides the hidden sizes of the tiny and the hub models


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"quantize={form!r}: choose one of {', '.join(FORMS)} (or null for full precision)")
    return form


def quantization_config(form: str, device: str | torch.device = "cpu") -> Any:
    """The transformers quantization config of `form` on `device` (see the module docstring)."""
    check_form(form)
    if torch.device(device).type == "cuda":
        from transformers import BitsAndBytesConfig

        _require("bitsandbytes", form, "cuda")
        if form == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.bfloat16)  # fmt: skip
    if torch.device(device).type != "cpu":
        raise ValueError(f"quantize={form} runs on cpu (torchao) or cuda (bitsandbytes), not on {device}")
    _require("torchao", form, "cpu")
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from transformers import TorchAoConfig

    if form == "int8":
        return TorchAoConfig(Int8WeightOnlyConfig())
    return TorchAoConfig(IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP)))


def load_quantized(folder: str, form: str, device: str | torch.device = "cpu", **kwargs):
    """The full-precision checkpoint in `folder`, quantized to `form` while it loads onto `device`."""
    from transformers import AutoModelForImageTextToText

    config = quantization_config(form, device)
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return AutoModelForImageTextToText.from_pretrained(
        folder, quantization_config=config, device_map=str(torch.device(device)), dtype=dtype, **kwargs
    ).eval()


def quantize_model(model, form: str, device: str | torch.device = "cpu"):
    """`model` (a transformers VLM, or a peft model, whose adapter is merged in first) quantized to `form`
    on `device`, in eval mode. The weights take the same path as an exported checkpoint (saved to a
    temporary folder, then loaded through the quantizer), so predict's answers equal a quantized export's;
    the temporary copy needs disk for one full-precision model. The input model is consumed."""
    check_form(form)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload(progressbar=False)
    generation_config = model.generation_config
    with tempfile.TemporaryDirectory(prefix="medvqa-quantize-") as tmp:
        model.save_pretrained(tmp)
        del model
        quantized = load_quantized(tmp, form, device)
    quantized.generation_config = generation_config
    return quantized


def weight_bytes(model) -> int:
    """Bytes the model's parameters and buffers hold in memory (quantized tensors count their int data and
    scales, through their own storage)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        inner = getattr(t, "__tensor_flatten__", None)
        if inner is not None:  # torchao tensor subclass: the plain tensors it is made of
            names, _ = t.__tensor_flatten__()
            total += sum(getattr(t, n).numel() * getattr(t, n).element_size() for n in names)
        else:
            total += t.numel() * t.element_size()
    return total


def _require(package: str, form: str, device: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        extra = "" if package == "torchao" else "[quantize]"
        raise ValueError(
            f"quantize={form} on {device} needs {package}: pip install -e '.{extra}' "
            f"(or pip install {package})"
        )
