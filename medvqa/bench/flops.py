"""Model FLOPs of a training step, counted as the model runs, and the peak dense FLOP/s of common GPUs.

The count (the MFU numerator), per matrix product of a weight W (in x out) over R rows (tokens, patches):

    forward                      2 * in * out * R          every call
    backward, input gradients    2 * in * out * R          only when the input needs a gradient
    backward, weight gradients   2 * in * out * R          only when W trains

so LoRA is not 6 x all-params x tokens: a frozen weight costs its forward and, where gradients flow through
it to a trainable layer below, its input gradient, but never a weight gradient; the adapter's own A and B
cost all three. Every `nn.Linear` (LoRA's A and B and torchao's Float8Linear included) and the patch
convolutions (as the equivalent product) are counted by forward hooks; calls made while autograd runs
backward (gradient checkpointing's recomputation) are not counted: they are hardware FLOPs, not model FLOPs.
Attention scores (no weights) are added per call from the token counts: 4 * d_attn * q * k per layer and
sequence forward (QK^T and AV; d_attn = heads x head_dim; q, k the real, unpadded query / key lengths), and
twice that backward when the part trains; the vision tower's attention as full attention over each image's
patches (Qwen2.5-VL attends within windows in most blocks, so its vision attention is over-counted). The
embedding lookup and norms are not counted. MFU = counted FLOPs / step time / the device's peak.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from medvqa.models.freeze import part_of

# Peak dense (no sparsity) tensor-core TFLOP/s by device name: (bf16, fp16, fp8), from NVIDIA's datasheets,
# sparsity figures halved; None where the chip has no such unit. The first name found in
# torch.cuda.get_device_name() wins, so the more specific names come first. bench.peak_tflops overrides.
PEAK_TFLOPS = {
    "GH200": (989.4, 989.4, 1978.9),
    "H200 NVL": (835.5, 835.5, 1670.5),
    "H200": (989.4, 989.4, 1978.9),  # SXM
    "H100 NVL": (835.5, 835.5, 1670.5),
    "H100 PCIe": (756.5, 756.5, 1513.0),
    "H100": (989.4, 989.4, 1978.9),  # SXM
    "H800": (989.4, 989.4, 1978.9),
    "B200": (2250.0, 2250.0, 4500.0),
    "A100": (312.0, 312.0, None),
    "A800": (312.0, 312.0, None),
    "L40S": (362.1, 362.1, 733.0),
    "L40": (181.0, 181.0, 362.0),
    "L4": (121.0, 121.0, 242.0),
    # AWS publishes no tensor figures for the A10G: these are the A10's datasheet values (set bench.peak_tflops)
    "A10G": (125.0, 125.0, None),
    "A10": (125.0, 125.0, None),
    "RTX 4090": (165.2, 165.2, 330.3),  # fp32 accumulation, as PyTorch's matmuls use
    "RTX A6000": (154.8, 154.8, None),
    "V100": (None, 125.0, None),
    "T4": (None, 65.0, None),
}
KINDS = ("bf16", "fp16", "fp8")


def peak_tflops(device_name: str, kind: str) -> float | None:
    """The table's peak for `kind` (bf16, fp16, fp8) on the named device; None when unknown."""
    if kind not in KINDS:
        return None
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_name:
            return peaks[KINDS.index(kind)]
    return None


def _in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


class FlopMeter:
    """Counts model FLOPs (module docstring) and tokens of everything `model` runs while attached, per phase
    (`meter.phase`: "train" unless a caller sets another, e.g. "generation" while GRPO samples)."""

    def __init__(self, model: torch.nn.Module, image_token_id: int | None):
        self.model, self.image_token_id = model, image_token_id
        self.phase = "train"
        self.flops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.tokens: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.handles: list = []
        names = [(n, p.requires_grad) for n, p in model.named_parameters()]
        self.text_trains = any(g and part_of(n) == "language" for n, g in names)
        self.vision_trains = any(g and part_of(n) == "vision" for n, g in names)

    def attach(self) -> FlopMeter:
        for module in self.model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d | torch.nn.Conv3d):
                self.handles.append(module.register_forward_hook(self._product))
        inner = _multimodal_model(self.model)
        self.text_config, self.vision_config = _sub_configs(inner.config)
        self.handles.append(inner.register_forward_pre_hook(self._sequence, with_kwargs=True))
        return self

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def reset(self) -> None:
        self.flops.clear()
        self.tokens.clear()

    def total(self, phase: str | None = None) -> float:
        phases = [phase] if phase else list(self.flops)
        return sum(sum(self.flops[p].values()) for p in phases)

    def _product(self, module, inputs, output) -> None:
        if _in_backward() or not inputs:
            return
        x = inputs[0]
        if isinstance(module, torch.nn.Linear):
            flops = 2 * module.in_features * module.out_features * (x.numel() // module.in_features)
        else:  # a convolution as its equivalent product: (in x kernel) -> out at every output position
            k = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
            flops = 2 * k * output.numel()
        counts = self.flops[self.phase]
        counts["forward"] += flops
        if torch.is_grad_enabled():
            counts["backward_input"] += flops if x.requires_grad else 0
            counts["backward_weight"] += flops if module.weight.requires_grad else 0

    def _sequence(self, module, args, kwargs) -> None:
        """Attention FLOPs and token counts of one call of the multimodal model."""
        if _in_backward():
            return
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is None:
            return
        keys = mask.sum(dim=1) if mask is not None else torch.full((ids.shape[0],), ids.shape[1])
        queries = keys.clamp(max=ids.shape[1])
        grad = torch.is_grad_enabled()
        counts = self.flops[self.phase]
        text = 4 * _attn_width(self.text_config) * _layers(self.text_config) * float((queries * keys).sum())
        counts["attention"] += text * (3 if grad and self.text_trains else 1)
        patches = _patches_per_image(kwargs, self.vision_config)
        vision = (
            4 * _attn_width(self.vision_config) * _layers(self.vision_config) * sum(p * p for p in patches)
        )
        counts["attention"] += vision * (3 if grad and self.vision_trains else 1)
        tokens = self.tokens[self.phase if grad else f"{self.phase}_no_grad"]
        real = ids.masked_fill(mask == 0, -1) if mask is not None and mask.shape == ids.shape else ids
        image = int((real == self.image_token_id).sum()) if self.image_token_id is not None else 0
        tokens["image"] += image
        tokens["text"] += int(queries.sum()) - image
        tokens["vision_patches"] += int(sum(patches))


def _multimodal_model(model):
    """The inner transformers model (Qwen2VLModel, PaliGemmaModel, ...) that every forward goes through."""
    for m in model.modules():
        name = type(m).__name__
        if hasattr(m, "language_model") and name.endswith("Model") and "For" not in name:
            return m
    raise ValueError(f"no multimodal inner model found in {type(model).__name__}")


def _sub_configs(config):
    return config.text_config, config.vision_config


def _layers(config) -> int:
    return getattr(config, "num_hidden_layers", None) or getattr(config, "depth", 0)


def _attn_width(config) -> int:
    hidden = getattr(config, "embed_dim", None) or config.hidden_size  # Qwen2-VL's vision width is embed_dim
    heads = getattr(config, "num_attention_heads", None) or config.num_heads
    return heads * (getattr(config, "head_dim", None) or hidden // heads)


def _patches_per_image(kwargs, vision_config) -> list[int]:
    grid = kwargs.get("image_grid_thw")
    if grid is not None:  # Qwen: (t, h, w) patches per image, before the 2x2 merge
        return [int(t * h * w) for t, h, w in grid.tolist()]
    pixels = kwargs.get("pixel_values")
    if pixels is None or pixels.dim() != 4:
        return []
    per_image = (pixels.shape[-1] // vision_config.patch_size) * (
        pixels.shape[-2] // vision_config.patch_size
    )
    return [per_image] * pixels.shape[0]
