"""`python -m medvqa.bench vision_reuse [models=qwen2_vl_2b_shape,...] [max_pixels=401408] [steps=2] ...`

The vision tower once per distinct image (medvqa/models/vision_cache.py) against the unshared path, on the
real-shaped models (conf/model/*_shape.yaml) with both towers cut by the same factor (`depth_factor`,
default 4: Qwen2-VL-2B's 28 decoder layers -> 7, its 32 vision blocks -> 8) and widths real, so the vision /
decoder split of the compute is the real model's. A LoRA on the language model only (peft=lora's targets)
keeps the tower frozen, as a real fine-tune does. Images are `image_side` square pictures through the real
processor at `max_pixels` (conf/data/vqa_rad.yaml: 512 x 28 x 28, what Qwen2-VL recipes set). Shared and
unshared passes alternate in one process, on the same weights and inputs (no optimizer step, so both see
the same model), per workload:

    sft   8 questions per image in image-grouped batches (data.group_by_image), `epochs` epochs: forward +
          backward (the cache keeps features across batches and epochs)
    dpo   pairs (chosen and rejected on one image): policy forward + backward, reference forward
    grpo  each prompt `num_generations` times: generate, policy forward + backward, reference forward
    eval  8 questions per image in release order: greedy generate

Printed per model and workload: `speedup` (unshared / shared seconds), `max_abs_loss_diff`,
`vision_share_unshared` (tower seconds / step seconds, unshared), and `flop_speedup_full_depth`: the FLOP
model of the same workload at full depth and full image size (2 x weights x rows forward, as much again
backward through the frozen decoder; tower forward only).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from peft import LoraConfig, get_peft_model
from PIL import Image

from medvqa.data.collate import VQACollator, token_tail
from medvqa.data.sample import VQASample
from medvqa.losses.answer_ce import answer_positions, answer_token_ce
from medvqa.losses.dpo import dpo_loss
from medvqa.models.freeze import LANGUAGE_LINEAR, part_of
from medvqa.models.peft import reference_pass
from medvqa.models.vision_cache import find_vision_cache, unshared
from medvqa.run import compose_config
from medvqa.stages.base import model_inputs, prompt_inputs
from medvqa.stages.dpo import answer_logps
from medvqa.stages.grpo import repeat_rows

QUESTIONS = ["Is there a lesion?", "Is this a CT image?", "Which organ is shown?", "Is the lesion on the left?",
             "In which plane was this image taken?", "Is this normal?", "Where is the mass?", "What is abnormal?"]  # fmt: skip
ANSWERS = ["yes", "no", "liver", "left", "axial", "no", "right lower lobe", "mass in the liver"]


def _items(n_images: int, side: int, per_image: int = 8, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(n_images)]
    return [{"sample": VQASample(id=f"{i}-{q}", image=f"img{i}", question=QUESTIONS[q % 8], answer=ANSWERS[q % 8]),
             "image": images[i]}
            for i in range(n_images) for q in range(per_image)]  # fmt: skip


def build(name: str, depth_factor: int, max_pixels: int, dtype: str, device: str = "cpu"):
    """The shape model cut to 1/depth_factor of both depths, with a language-only LoRA, and its collator."""
    cfg = compose_config([f"model={name}", f"model.dtype={dtype}"]).model
    text, vision = cfg.text, cfg.vision
    depth = vision.get("depth", vision.get("num_hidden_layers"))
    layers = max(1, round(text.num_hidden_layers / depth_factor))
    vlm = instantiate(
        cfg,
        num_layers=layers,
        vision_depth=max(1, round(depth / depth_factor)),
        device=device if device != "cpu" else None,
    )  # on a GPU: random weights drawn there
    torch.manual_seed(0)
    model = get_peft_model(
        vlm.model, LoraConfig(r=16, target_modules=LANGUAGE_LINEAR, init_lora_weights=False)
    )
    qwen = cfg.family != "paligemma"  # PaliGemma's processor has one fixed size
    return model, vlm.processor, VQACollator(vlm.processor, max_pixels=max_pixels if qwen else None)


def on(model, batch: dict) -> dict:
    """The batch's tensors on the model's device (`meta` stays)."""
    device = next(model.parameters()).device
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _loss(model, batch) -> torch.Tensor:
    """SFT's answer-token cross-entropy as SFTModule.answer_loss computes it (logits at answer positions)."""
    inputs = model_inputs(batch)
    labels = inputs.pop("labels")
    positions = answer_positions(labels)
    total, count = answer_token_ce(model(**inputs, logits_to_keep=positions).logits, labels[:, positions + 1])
    return total / count


def sft(model, collate, items, epochs: int) -> list[float]:
    losses = []
    for _ in range(epochs):
        for start in range(0, len(items), 8):
            loss = _loss(model, on(model, collate(items[start : start + 8])))
            loss.backward()
            losses.append(float(loss.detach()))
    return losses


def dpo(model, collate, items) -> list[float]:
    from medvqa.data.preference import PairCollator

    pairs = [it | {"rejected": ANSWERS[(k + 3) % 8], "source": "mined"} for k, it in enumerate(items)]
    losses = []
    for start in range(0, len(pairs), 4):
        inputs = model_inputs(on(model, PairCollator(collate)(pairs[start : start + 4])))
        policy = answer_logps(model, inputs)  # the DPO stage's own log-probs (logits at answer positions)
        with torch.no_grad(), reference_pass(model):
            reference = answer_logps(model, inputs)
        n = len(policy) // 2
        loss = dpo_loss(policy[:n], policy[n:], reference[:n], reference[n:], 0.1)[0].mean()
        loss.backward()
        losses.append(float(loss.detach()))
    return losses


def grpo(model, collate, items, generations: int, new_tokens: int) -> list[float]:
    losses = []
    for start in range(0, len(items), 2):
        prompts = repeat_rows(prompt_inputs(on(model, collate(items[start : start + 2]))), generations)
        torch.manual_seed(start)
        with torch.no_grad():
            out = model.generate(
                **prompts, do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens
            )
        full = {k: v for k, v in prompts.items()}
        full["input_ids"], length = out, out.shape[1] - prompts["input_ids"].shape[1]
        new = out[:, -length:]
        for key in [
            k for k, v in prompts.items() if torch.is_tensor(v) and v.shape == prompts["input_ids"].shape
        ]:
            if key != "input_ids":  # per-token inputs grow by the completion, as GRPOModule.completion_logps
                fill = torch.ones_like(new) if key == "attention_mask" else token_tail(key, new)
                full[key] = torch.cat([prompts[key], fill], dim=1)
        logits = model(**full, logits_to_keep=length + 1).logits[:, :-1]
        with torch.no_grad(), reference_pass(model):
            ref = model(**full, logits_to_keep=length + 1).logits[:, :-1]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, out[:, -length:, None]).squeeze(-1)
        loss = (
            -logps.mean()
            + (
                logps - torch.log_softmax(ref.float(), -1).gather(-1, out[:, -length:, None]).squeeze(-1)
            ).mean()
        )
        loss.backward()
        losses.append(float(loss.detach()))
    return losses


def evaluate(model, collate, items, new_tokens: int) -> list[float]:
    firsts = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), 8):
            out = model.generate(**prompt_inputs(on(model, collate(items[start : start + 8]))), do_sample=False,
                                 max_new_tokens=new_tokens, output_scores=True, return_dict_in_generate=True)  # fmt: skip
            firsts.append(float(out.scores[0].float().max()))
    return firsts


def timed(fn, model, shared: bool) -> tuple[float, float, list[float]]:
    """(seconds, tower seconds, losses) of fn() on the shared or the unshared path."""
    cache = find_vision_cache(model)
    cache.clear()
    tower = cache.tower_s
    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    if shared:
        losses = fn()
    else:
        with unshared(model):
            losses = fn()
    return time.perf_counter() - started, cache.tower_s - tower, losses


def flop_speedup(name: str, max_pixels: int, generations: int = 4) -> dict[str, float]:
    """The FLOP model (module docstring) at full depth: per workload, unshared / shared model FLOPs."""
    cfg = compose_config([f"model={name}"]).model
    vlm = instantiate(cfg, num_layers=None, vision_depth=None, device="meta")
    tower = sum(p.numel() for n, p in vlm.model.named_parameters() if part_of(n) in ("vision", "projector"))
    decoder = sum(
        p.numel() for n, p in vlm.model.named_parameters() if part_of(n) == "language" and "embed" not in n
    )
    if cfg.family == "paligemma":
        patches = (cfg.vision.image_size // cfg.vision.patch_size) ** 2
        tokens = patches
    else:
        patches = max_pixels // (cfg.vision.patch_size**2)
        tokens = patches // cfg.vision.spatial_merge_size**2
    image = 2 * tower * patches  # one tower forward
    row = 2 * decoder * (tokens + 40)  # one decoder forward over image + ~40 text tokens
    # (tower passes unshared, tower passes shared, decoder forward-equivalents), per image
    work = {"sft": (16, 1, 16 * 2), "dpo": (4, 1, 2 * 3), "grpo": (3 * generations, 1, generations * 4),
            "eval": (8, 1, 8)}  # fmt: skip
    return {k: round((u * image + d * row) / (s * image + d * row), 3) for k, (u, s, d) in work.items()}


def run(models: str = "qwen2_vl_2b_shape,qwen2_5_vl_3b_shape,paligemma_3b_shape", max_pixels: str = "401408",
        image_side: str = "512", depth_factor: str = "4", images: str = "1", generations: str = "4",
        new_tokens: str = "4", epochs: str = "2", dtype: str = "fp32", workloads: str = "sft,dpo,grpo,eval",
        flop_max_pixels: str = "401408", repeats: str = "2", pairs: str = "4", prompts: str = "2") -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(0)
    opts = {k: int(v) for k, v in dict(max_pixels=max_pixels, image_side=image_side, depth_factor=depth_factor,
            images=images, generations=generations, new_tokens=new_tokens, epochs=epochs, repeats=repeats,
            pairs=pairs, prompts=prompts, flop_max_pixels=flop_max_pixels).items()}  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {"device": device, "dtype": dtype, **opts, "models": {}}
    for name in models.split(","):
        result["models"][name] = measure_model(name, workloads.split(","), opts, dtype, device)
    return result


def measure_model(
    name: str, workloads: list[str], o: dict[str, int], dtype: str, device: str
) -> dict[str, Any]:
    """One model's workloads (module docstring), shared and unshared alternating `repeats` times each; the
    fastest run of each path counts."""
    model, _, collate = build(name, o["depth_factor"], o["max_pixels"], dtype, device)
    model.to(device).train()
    items = _items(o["images"], o["image_side"])
    fns = {"sft": lambda: sft(model, collate, items, o["epochs"]),
           "dpo": lambda: dpo(model, collate, items[: o["pairs"]]),
           "grpo": lambda: grpo(model, collate, items[: o["prompts"]], o["generations"], o["new_tokens"]),
           "eval": lambda: evaluate(model, collate, items, o["new_tokens"])}  # fmt: skip
    out: dict[str, Any] = {}
    for work in workloads:
        model.train()
        runs: dict[bool, list] = {True: [], False: []}
        for shared in (False, True) * o["repeats"]:  # alternating: load drifts hit both paths alike
            runs[shared].append(timed(fns[work], model, shared))
            print(f"vision_reuse {name} {work} shared={shared}: {runs[shared][-1][0]:.1f} s", file=sys.stderr)
        best = {k: min(v, key=lambda r: r[0]) for k, v in runs.items()}
        diff = max(abs(a - b) for a, b in zip(best[True][2], best[False][2], strict=True))
        out[work] = {"speedup": round(best[False][0] / best[True][0], 3), "max_abs_loss_diff": diff,
                     "vision_share_unshared": round(best[False][1] / best[False][0], 3),
                     "seconds_shared": round(best[True][0], 2), "seconds_unshared": round(best[False][0], 2)}  # fmt: skip
    out["flop_speedup_full_depth"] = flop_speedup(name, o["flop_max_pixels"], o["generations"])
    return out
