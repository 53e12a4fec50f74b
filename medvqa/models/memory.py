"""How much memory a training step will need, before the first one: `estimate_memory` (a pure function of
the model's parameters and config and the run's shape), `device_memory`, and the one line the pre-flight
prints (`memory_line`), with the knob to turn when it will not fit.

Parts, in bytes (`estimate_memory`'s keys):

    weights      frozen parameters and buffers as stored (a 4-bit base counts its packed bytes)
    trainable    trainable parameters (the adapter under LoRA; every unfrozen weight under peft=none)
    gradients    one gradient per trainable parameter, in the parameter's dtype
    optimizer    the optimizer's state: AdamW/Adam keep two tensors per parameter (exp_avg, exp_avg_sq,
                 in the parameter's dtype) and a float32 `step` per tensor; SGD without momentum none
    activations  what autograd keeps for backward, for micro_batch x generations sequences of seq_len
                 tokens (see below)
    vision_cache image features kept across batches (medvqa/models/vision_cache.py): at most
                 model.vision_cache_mb, at most one entry per distinct training image (`vision_cache_bytes`);
                 0 when the cache keeps nothing across batches (the tower trains, or it is off)
    total        the sum

Activations are a model of a transformer layer, not a measurement (issue 14's bench prints it beside
measured peaks). Per token and layer the saved tensors are about ACT_PER_TOKEN_LAYER(h, h_kv, I) =
8h + 2h_kv + 4I elements (norm inputs, q/k/v, attention output, o_proj input; gate, up, act(gate),
act*up), with SDPA / flash attention (no seq^2 scores kept); with gradient checkpointing only each layer's
input (h) is kept plus one layer recomputed. The vocabulary projection runs only over answer positions
(`logits_to_keep`): answer_len x V logits in the compute dtype plus float32 copies for the cross-entropy
and its gradient. The vision tower adds the same per patch of each image when any of its (or the
projector's) parameters train; frozen, its activations are not kept. Element size: 2 bytes under
bf16/fp16 precision (autocast), else 4. Not counted: CUDA context and allocator fragmentation, GRPO's
generation KV cache (released before the training pass), DPO's reference forward (no grad).
"""

from __future__ import annotations

from typing import Any

import torch

GB = 1024**3
STATES_PER_PARAM = {"adamw": 2, "adam": 2, "sgd": 0, "rmsprop": 1, "adagrad": 1}
PART_ORDER = ("weights", "trainable", "gradients", "optimizer", "activations", "vision_cache")


def act_per_token_layer(hidden: int, kv_hidden: int, intermediate: int) -> int:
    """Elements autograd keeps per token in one transformer layer (module docstring)."""
    return 8 * hidden + 2 * kv_hidden + 4 * intermediate


def estimate_memory(
    model: torch.nn.Module,
    micro_batch: int = 1,
    seq_len: int = 0,
    answer_len: int = 0,
    image_patches: int = 0,
    generations: int = 1,
    precision: str = "32-true",
    gradient_checkpointing: bool = False,
    optimizer: str = "adamw",
    momentum: bool = False,
    vision_cache: int = 0,
) -> dict[str, int]:
    """Bytes per part of one training step (module docstring). `seq_len`: the longest training sequence
    (pre-flight's), `answer_len`: its supervised tokens, `image_patches`: vision-tower tokens per image
    (before any merge), `generations`: GRPO's completions per prompt (1 otherwise), `precision`:
    trainer.precision, `optimizer`: the optimizer class name (AdamW, SGD, ...), `vision_cache`: bytes of
    `vision_cache_bytes`."""
    frozen = trainable = tensors = 0
    for p in model.parameters():
        size = p.numel() * p.element_size()
        if p.requires_grad:
            trainable, tensors = trainable + size, tensors + 1
        else:
            frozen += size
    frozen += sum(b.numel() * b.element_size() for b in model.buffers())
    states = STATES_PER_PARAM.get(optimizer.lower(), 2) + (
        1 if momentum and optimizer.lower() == "sgd" else 0
    )
    optimizer_bytes = states * trainable + (4 * tensors if optimizer.lower() in ("adamw", "adam") else 0)
    sequences = micro_batch * generations
    act = activation_bytes(
        model, sequences, seq_len, answer_len, image_patches, precision, gradient_checkpointing
    )
    parts = {"weights": frozen, "trainable": trainable, "gradients": trainable, "optimizer": optimizer_bytes,
             "activations": act, "vision_cache": int(vision_cache)}  # fmt: skip
    return parts | {"total": sum(parts.values())}


def vision_cache_bytes(
    model: torch.nn.Module, images: int, image_tokens: int, precision: str = "32-true"
) -> int:
    """What the vision cache inside `model` will hold across batches: `images` distinct training images of
    `image_tokens` features each, as wide as the decoder, capped at its model.vision_cache_mb; 0 when there
    is no cache or it keeps nothing across batches (VisionCache.across_reason)."""
    from medvqa.models.vision_cache import find_vision_cache

    cache = find_vision_cache(model)
    if cache is None or cache.across_reason() is not None:
        return 0
    config = getattr(model, "config", None)
    hidden = _config_sizes(getattr(config, "text_config", None) or config)[0]
    first = next(model.parameters(), None)
    element = (
        2 if str(precision).startswith(("bf16", "16")) else (first.element_size() if first is not None else 4)
    )
    return min(cache.max_bytes, images * image_tokens * hidden * element)


def measured_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """The bytes the tensors behind `estimate_memory`'s weights, trainable, gradients and optimizer parts
    really hold (exact sums of numel x element size), to set the estimate against."""
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    params = list(model.parameters())
    state = optimizer.state.values() if optimizer is not None else []
    return {
        "weights": sum(nbytes(p) for p in params if not p.requires_grad)
        + sum(nbytes(b) for b in model.buffers()),
        "trainable": sum(nbytes(p) for p in params if p.requires_grad),
        "gradients": sum(nbytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(nbytes(v) for s in state for v in s.values() if torch.is_tensor(v)),
    }


def _config_sizes(config: Any) -> tuple[int, int, int, int, int]:
    """(hidden, kv hidden, intermediate, layers, vocab) of a text or vision config (0 where absent)."""
    if config is None:
        return 0, 0, 0, 0, 0
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "embed_dim", 0)
    if hasattr(config, "embed_dim") and getattr(config, "mlp_ratio", None):  # Qwen2-VL's vision config
        hidden = config.embed_dim
    heads = getattr(config, "num_attention_heads", 0) or getattr(config, "num_heads", 0) or 1
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inter = getattr(config, "intermediate_size", 0) or int(hidden * (getattr(config, "mlp_ratio", 4) or 4))
    layers = getattr(config, "num_hidden_layers", 0) or getattr(config, "depth", 0)
    return hidden, kv, inter, layers, getattr(config, "vocab_size", 0)


def activation_bytes(model, sequences: int, seq_len: int, answer_len: int, image_patches: int,
                     precision: str = "32-true", gradient_checkpointing: bool = False) -> int:  # fmt: skip
    """The activations part of `estimate_memory` (module docstring)."""
    config = getattr(model, "config", None)
    element = 2 if str(precision).startswith(("bf16", "16")) else 4
    h, kv, inter, layers, vocab = _config_sizes(getattr(config, "text_config", None) or config)
    per_layer = act_per_token_layer(h, kv, inter)
    kept = (layers * h + per_layer) if gradient_checkpointing else layers * per_layer
    text = sequences * seq_len * kept * element
    logits = sequences * answer_len * vocab * (element + 8)
    vision = 0
    if image_patches and _vision_trains(model):
        vh, vkv, vinter, vlayers, _ = _config_sizes(getattr(config, "vision_config", None))
        v_layer = act_per_token_layer(vh, vkv, vinter)
        v_kept = (vlayers * vh + v_layer) if gradient_checkpointing else vlayers * v_layer
        vision = sequences * image_patches * v_kept * element
    return int(text + logits + vision)


def _vision_trains(model) -> bool:
    from medvqa.models.freeze import part_of

    return any(p.requires_grad and part_of(n) in ("vision", "projector") for n, p in model.named_parameters())


def device_memory(device: torch.device | str | None = None) -> tuple[int, str]:
    """(bytes this process can use, what they are): on CUDA the free memory plus what this process's
    allocator already holds (torch.cuda.mem_get_info + memory_reserved); elsewhere the machine's available
    RAM plus this process's resident memory (psutil)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device), f"{device} ({total / GB:.1f} GB)"
    import psutil

    return psutil.virtual_memory().available + psutil.Process().memory_info().rss, "RAM"


def fix_for(parts: dict[str, int], peft: bool, quantized: bool, precision: str, checkpointing: bool,
            image_share: float) -> str:  # fmt: skip
    """The knob to turn first for the largest part."""
    biggest = max(PART_ORDER, key=lambda k: parts.get(k, 0))
    if biggest == "vision_cache":
        return "lower model.vision_cache_mb (0: features shared within a batch only)"
    if biggest == "activations":
        knobs = []
        if image_share > 0.5:
            knobs.append("lower data.max_pixels (image tokens are most of each sequence)")
        knobs.append("lower data.batch_size (effective_batch_size keeps the update: accumulation)")
        if not checkpointing:
            knobs.append("set stage.gradient_checkpointing=true")
        if not str(precision).startswith(("bf16", "16")):
            knobs.append("precision=bf16")
        return "; ".join(knobs)
    if biggest == "weights":
        return "peft=qlora (4-bit base) on a CUDA GPU" if not quantized else "a smaller model"
    if not peft:
        return "peft=lora (train an adapter, not every weight), or model.freeze=[vision] to train less"
    return "lower peft.r, or precision=bf16"


def _size(n: int) -> str:
    return f"{n / GB:.2f} GB" if n >= GB / 10 else f"{n / 2**20:.1f} MB"


def memory_line(parts: dict[str, int], available: int, where: str, fix: str) -> str:
    """One line: the estimate by part against the device, and the knob when it will not fit."""
    shown = " + ".join(f"{_size(parts[k])} {k}" for k in PART_ORDER if parts.get(k) or k != "vision_cache")
    head = f"memory estimate: {shown} = {_size(parts['total'])} of {available / GB:.1f} GB on {where}"
    if parts["total"] <= available:
        return f"{head}: fits"
    return f"{head}: will NOT fit; {fix}"
