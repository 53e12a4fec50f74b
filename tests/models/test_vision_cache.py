"""The vision tower once per distinct image (medvqa/models/vision_cache.py): the same losses, gradients and
answers as the unshared path, reuse within a call always and across calls only while the tower is frozen."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from medvqa.data.collate import VQACollator
from medvqa.data.sample import VQASample
from medvqa.models import vision_cache
from medvqa.models.freeze import LANGUAGE_LINEAR
from medvqa.models.tiny import build_tiny
from medvqa.models.vision_cache import find_vision_cache, share_image_features
from medvqa.stages.base import model_inputs

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "paligemma"]


def _batch(processor, n_images=2, per_image=3, seed=0):
    """n_images random pictures, each asked per_image questions, rows interleaved (image 0, 1, 0, 1, ...)."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)) for _ in range(n_images)]
    items = [{"sample": VQASample(id=str(i), image="x", question=f"Is there a lesion {i}?", answer="yes" if i % 3 else "left lung"),
              "image": images[i % n_images]} for i in range(n_images * per_image)]  # fmt: skip
    return model_inputs(VQACollator(processor)(items))


def _tiny(family, share=True, **kw):
    return build_tiny(
        family, hidden_size=32, num_layers=1, vision_depth=1, image_size=56, share_vision=share, **kw
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_encodes_each_image_once_with_the_unshared_loss_and_gradients(family):
    """The tower trains here (every weight does): rows of one image share one tensor, and autograd sums
    their gradients into it, so every gradient equals the unshared model's."""
    shared, plain = _tiny(family), _tiny(family, share=False)
    inputs = _batch(shared.processor)
    losses = []
    for vlm in (shared, plain):
        vlm.model.train()
        loss = vlm.model(**inputs).loss
        loss.backward()
        losses.append(loss)
    assert abs(float(losses[0].detach() - losses[1].detach())) <= 1e-5
    grads = {n: p.grad for n, p in plain.model.named_parameters()}
    tower = [n for n in grads if "visual" in n or "vision_tower" in n or "multi_modal_projector" in n]
    live = [n for n in tower if grads[n] is not None and grads[n].abs().sum() > 0]
    assert len(live) > len(tower) // 2  # the tower really gets gradients (SigLIP's unused head does not)
    for n, p in shared.model.named_parameters():
        assert (p.grad is None) == (grads[n] is None), n
        assert p.grad is None or torch.allclose(p.grad, grads[n], atol=1e-5, rtol=0), n
    stats = find_vision_cache(shared.model).stats()
    assert (stats["images"], stats["computed"], stats["batch_hits"], stats["cache_hits"]) == (6, 2, 4, 0)
    assert find_vision_cache(plain.model) is None


def _frozen_tower(family, cache_mb=1024):
    """A LoRA on the language model only (conf/peft/lora.yaml): the tower and projector are frozen."""
    vlm = _tiny(family, vision_cache_mb=cache_mb)
    model = get_peft_model(
        vlm.model, LoraConfig(r=4, target_modules=LANGUAGE_LINEAR, init_lora_weights=False)
    )
    return model.eval(), vlm.processor


@pytest.mark.parametrize("family", FAMILIES)
def test_a_frozen_tower_is_not_run_again_for_an_image_it_has_seen(family):
    model, processor = _frozen_tower(family)
    plain = _tiny(family, share=False).model
    get_peft_model(plain, LoraConfig(r=4, target_modules=LANGUAGE_LINEAR, init_lora_weights=False))
    plain.load_state_dict(model.get_base_model().state_dict())
    cache = find_vision_cache(model)
    first, second = _batch(processor, seed=0), _batch(processor, n_images=3, per_image=1, seed=0)
    with torch.no_grad():
        model(**first)
        logits = model(**second).logits  # images 0 and 1 again (cached), image 2 new
        expected = plain.eval()(**second).logits
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0)
    s = cache.stats()
    assert (s["computed"], s["cache_hits"], s["batch_hits"]) == (3, 2, 4) and s["cached_mb"] > 0
    # a tower weight changed in place (an optimizer step, a loaded state dict): nothing stale is served
    tower = cache.tower()[0]
    with torch.no_grad():
        next(tower.parameters()).mul_(1.5)
        model(**second)
    assert cache.stats()["computed"] == 6


def test_the_lru_holds_at_most_vision_cache_mb_and_drops_the_oldest():
    model, processor = _frozen_tower("qwen2_vl")
    cache = find_vision_cache(model)
    one = _batch(processor, n_images=1, per_image=1)  # image 0 of seed 0
    with torch.no_grad():
        model(**one)
        size = cache.bytes  # one image's features
        cache.clear()
        cache.max_bytes = size - 1
        model(**one)
        assert not cache.entries and cache.bytes == 0  # larger than the budget: nothing kept
        cache.max_bytes = int(1.5 * size)
        model(**_batch(processor, n_images=2, per_image=1))  # images 0 and 1: 1 evicts 0
        model(**one)  # image 0 again: run again
    assert len(cache.entries) == 1 and cache.bytes == size
    assert cache.stats()["computed"] == 1 + 1 + 2 + 1 and cache.stats()["cache_hits"] == 0


@pytest.mark.parametrize(("target", "reason"), [("all-linear", "carries adapters"), (None, "trains")])
def test_across_calls_switches_off_with_one_log_line_when_the_tower_trains(target, reason, caplog):
    vlm = _tiny("qwen2_vl")
    model = get_peft_model(vlm.model, LoraConfig(r=4, target_modules=target)) if target else vlm.model
    inputs = _batch(vlm.processor)
    with caplog.at_level(logging.INFO, logger="medvqa.models.vision_cache"), torch.no_grad():
        model(**inputs)
        model(**inputs)
    lines = [r.getMessage() for r in caplog.records if "not kept across batches" in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0]
    s = find_vision_cache(model).stats()
    assert (s["computed"], s["batch_hits"], s["cache_hits"], s["cached_mb"]) == (4, 8, 0, 0)


def test_an_unsupported_family_is_left_alone_with_one_log_line(caplog):
    model = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.INFO, logger="medvqa.models.vision_cache"):
        assert share_image_features(model, "llava") is None
    assert "'llava' is not supported" in caplog.text and "get_image_features" not in model.__dict__


def test_an_active_dropout_in_the_tower_keeps_rows_apart():
    vlm = _tiny("qwen2_vl")
    model = get_peft_model(vlm.model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.5)).train()
    model(**_batch(vlm.processor))
    assert find_vision_cache(model).stats()["computed"] == 6  # each row its own dropout mask, as unshared
    model.eval()
    with torch.no_grad():
        model(**_batch(vlm.processor))
    assert find_vision_cache(model).stats()["computed"] == 8


def test_deepcopy_keeps_the_copy_on_its_own_weights():
    import copy

    vlm = _tiny("qwen2_vl")
    twin = copy.deepcopy(vlm.model)
    assert (
        find_vision_cache(twin).owner is twin.model and find_vision_cache(vlm.model).owner is vlm.model.model
    )


def test_share_image_features_is_what_the_builders_apply(monkeypatch):
    made = []
    real = vision_cache.share_image_features
    monkeypatch.setattr(
        vision_cache, "share_image_features", lambda *a, **k: made.append(real(*a, **k)) or made[-1]
    )
    vlm = _tiny("paligemma", vision_cache_mb=7)
    assert made and made[0] is find_vision_cache(vlm.model) and made[0].max_bytes == 7 * 2**20


def test_the_memory_estimate_counts_the_cache_only_when_it_keeps_features_across_batches():
    from medvqa.models.memory import estimate_memory, memory_line, vision_cache_bytes

    frozen, _ = _frozen_tower("qwen2_vl", cache_mb=1)
    hidden = frozen.config.text_config.hidden_size
    assert vision_cache_bytes(frozen, images=10, image_tokens=4) == 10 * 4 * hidden * 4  # fp32 features
    assert vision_cache_bytes(frozen, images=10**6, image_tokens=4) == 2**20  # capped at vision_cache_mb
    assert vision_cache_bytes(frozen, 10, 4, precision="bf16-mixed") == 10 * 4 * hidden * 2
    trains = get_peft_model(_tiny("qwen2_vl").model, LoraConfig(r=4, target_modules="all-linear"))
    assert vision_cache_bytes(trains, 10, 4) == 0  # adapters on the tower: nothing kept across batches
    assert vision_cache_bytes(_tiny("qwen2_vl", share=False).model, 10, 4) == 0
    parts = estimate_memory(frozen, vision_cache=5 * 2**20)
    assert parts["vision_cache"] == 5 * 2**20 and parts["total"] == sum(
        v for k, v in parts.items() if k != "total"
    )
    assert "5.0 MB vision_cache" in memory_line(parts, 2**40, "RAM", "")
    assert "vision_cache" not in memory_line(estimate_memory(frozen), 2**40, "RAM", "")
