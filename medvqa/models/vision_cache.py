"""The vision tower once per distinct image: `share_image_features` (the builders call it).

The model's own image-feature step (transformers' `get_image_features` on Qwen2-VL's / Qwen2.5-VL's /
PaliGemma's inner model: vision tower + projector) is replaced, on that one model object, by a
`VisionCache` that keys every image of a call by a content hash of its preprocessed pixels (and, for Qwen,
its `image_grid_thw` row), runs the original step once over the distinct images it has no features for,
and hands each row its image's features. Nothing else changes: the stages, the collator and `generate`
call the model exactly as before. All three towers attend within one image only (Qwen: per-image
`cu_seqlens` / windows; SigLIP: one image per batch row), so an image's features do not depend on the
other images of the call and the reuse is exact.

- Within a call, always: a GRPO group's G copies of a prompt, a DPO pair's chosen and rejected rows,
  several questions on one image run the tower once. When the tower trains, the shared tensor is indexed
  back to every row, so autograd sums the rows' gradients into it: the same gradient as the unshared path.
  Not while a dropout inside the tower is active (each row would draw its own mask).
- Across calls (batches, the reference pass, epochs, evaluation), in a bounded LRU of
  `model.vision_cache_mb` MB on the features' device, only while the tower and projector are frozen (no
  parameter there requires grad), carry no adapter (a switched-off or reference adapter would change
  them), and nobody switched it off (`disable_across`: medvqa/callbacks/vision_cache.py does when the
  training split is augmented). The cache is emptied when any tower weight changes in place (tensor
  version counters), a safety net behind the frozen check. Each switch-off is logged once, with why.

Hashing is hand-written (blake2b over the pixel bytes): no library dedupes a model's encoder inputs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

log = logging.getLogger(__name__)
SUPPORTED = ("qwen2_vl", "qwen2_5_vl", "paligemma")
MB = 2**20


class VisionCache:
    """Stands in for `owner.get_image_features` (module docstring). Counters (`stats()`): `images` rows
    seen, `computed` images the tower ran on, `batch_hits` rows served by another row of the same call,
    `cache_hits` rows served from the LRU, and `tower_s` seconds spent in the tower."""

    def __init__(self, owner: torch.nn.Module, family: str, max_mb: float):
        self.owner, self.family = owner, family
        self.max_bytes = int(float(max_mb) * MB)
        self.entries: OrderedDict[bytes, Any] = OrderedDict()
        self.bytes = 0
        self.off_reason: str | None = None  # set by disable_across: no reuse across calls
        self.share = True  # False (`unshared`): every call runs the tower as transformers does, timed
        self._logged: set[str] = set()
        self._versions: int | None = None
        self.images = self.computed = self.batch_hits = self.cache_hits = 0
        self.tower_s = 0.0

    # -- which modules are the tower -----------------------------------------------------------------
    def tower(self) -> list[torch.nn.Module]:
        if self.family == "paligemma":
            return [self.owner.vision_tower, self.owner.multi_modal_projector]
        return [self.owner.visual]  # Qwen: the merger (projector) sits inside `visual`

    def _params(self):
        return [p for m in self.tower() for p in m.parameters()]

    def stochastic(self) -> bool:
        """A dropout with p > 0 active in the tower (train mode): rows must not share one draw."""
        return any(
            m.training and isinstance(m, torch.nn.Dropout) and m.p > 0
            for t in self.tower()
            for m in t.modules()
        )

    # -- the switch ----------------------------------------------------------------------------------
    def disable_across(self, reason: str) -> None:
        """No reuse across calls from now on (within-call sharing stays); logs `reason` once."""
        self.off_reason = reason
        self.clear()
        self._note(reason)

    def across_reason(self) -> str | None:
        """Why features may not be kept across calls now, or None when they may."""
        if self.max_bytes <= 0:
            return "model.vision_cache_mb=0"
        if self.off_reason:
            return self.off_reason
        if any(hasattr(m, "lora_A") for t in self.tower() for m in t.modules()):
            return ("the vision tower carries adapters (peft.target_modules reaches it, e.g. peft=lora_tiny's "
                    "all-linear), so its features follow the active adapter")  # fmt: skip
        if any(p.requires_grad for p in self._params()):
            return ("the vision tower or projector trains (model.freeze leaves it out, or peft=none), so its "
                    "features change every step")  # fmt: skip
        return None

    def _note(self, reason: str) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            log.info("vision cache: features are not kept across batches: %s; images repeated within a batch "
                     "still run the tower once", reason)  # fmt: skip

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def _check_versions(self) -> None:
        """Empty the cache when a tower tensor was changed in place since the last call."""
        versions = sum(p._version for p in self._params())
        if self._versions is not None and versions != self._versions and self.entries:
            log.info(
                "vision cache: the vision tower's weights changed; %d cached images dropped",
                len(self.entries),
            )
            self.clear()
        self._versions = versions

    # -- the call ------------------------------------------------------------------------------------
    def __call__(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None, **kwargs):
        qwen = self.family != "paligemma"
        extras = {k for k, v in kwargs.items() if v is not None and k != "return_dict"}
        if (
            not self.share
            or extras
            or kwargs.get("return_dict") is False
            or (qwen and image_grid_thw is None)
            or self.stochastic()
        ):
            return self._timed(pixel_values, image_grid_thw, kwargs)  # hidden states / attentions asked for
        counts = image_grid_thw.prod(-1).tolist() if qwen else [1] * pixel_values.shape[0]
        keys = image_keys(pixel_values, counts, image_grid_thw)
        self.images += len(keys)
        reason = self.across_reason()
        across = reason is None
        if across:
            self._check_versions()
        else:
            self._note(reason)
        found: dict[bytes, Any] = {}
        for key in dict.fromkeys(keys):
            if across and key in self.entries:
                self.entries.move_to_end(key)
                found[key] = self.entries[key]
        cache_rows = sum(k in found for k in keys)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        self.cache_hits += cache_rows
        self.batch_hits += len(keys) - cache_rows - len(missing)
        if len(missing) == len(keys):  # every row a new image: the original call, unchanged
            out = self._timed(pixel_values, image_grid_thw, kwargs)
            features = self._per_image(out.pooler_output)
            if across:
                self._store(keys, features)
            return out
        if missing:
            first = {k: keys.index(k) for k in missing}
            pixels, grid = select_images(pixel_values, counts, image_grid_thw, [first[k] for k in missing])
            out = self._timed(pixels, grid, kwargs)
            computed = dict(zip(missing, self._per_image(out.pooler_output), strict=True))
            if across:
                self._store(list(computed), list(computed.values()))
            found |= computed
        rows = [found[k] for k in keys]
        pooled = tuple(rows) if qwen else torch.cat(rows)
        return BaseModelOutputWithPooling(pooler_output=pooled)

    def _timed(self, pixel_values, image_grid_thw, kwargs):
        """The original step, its seconds added to `tower_s` (on a GPU synchronized around it: the decoder
        waits for these features next anyway, so only the CPU's launch lead is lost)."""
        sync = torch.cuda.synchronize if pixel_values.is_cuda else (lambda: None)
        sync()
        started = time.perf_counter()
        original = type(self.owner).get_image_features  # the class's method: the unshared step
        if self.family == "paligemma":
            out = original(self.owner, pixel_values, **kwargs)
        else:
            out = original(self.owner, pixel_values, image_grid_thw, **kwargs)
        sync()
        self.tower_s += time.perf_counter() - started
        self.computed += (
            int(image_grid_thw.shape[0]) if image_grid_thw is not None else int(pixel_values.shape[0])
        )
        return out

    def _per_image(self, pooled) -> list[torch.Tensor]:
        """One features tensor per image: Qwen's pooler_output is already a tuple (tokens_i, D); PaliGemma's
        is (B, T, D), kept as (1, T, D) slices so the rows concatenate back."""
        return list(pooled) if self.family != "paligemma" else list(pooled.split(1))

    def _store(self, keys: list[bytes], features: list[torch.Tensor]) -> None:
        for key, feat in zip(keys, features, strict=True):
            if key in self.entries or feat.requires_grad:
                continue
            size = feat.numel() * feat.element_size()
            if size > self.max_bytes:
                continue
            while self.bytes + size > self.max_bytes:
                _, old = self.entries.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
            self.entries[key] = feat.detach()
            self.bytes += size

    def stats(self) -> dict[str, float]:
        """Counters since the model was built (class docstring) and the tower seconds saved: rows not run
        through the tower times the mean measured seconds per image that was."""
        per_image = self.tower_s / self.computed if self.computed else 0.0
        hits = self.batch_hits + self.cache_hits
        return {"images": self.images, "computed": self.computed, "batch_hits": self.batch_hits,
                "cache_hits": self.cache_hits, "hit_rate": hits / self.images if self.images else 0.0,
                "tower_s": self.tower_s, "saved_s": hits * per_image, "cached_mb": self.bytes / MB}  # fmt: skip


def image_keys(pixel_values: torch.Tensor, counts: list[int], grid: torch.Tensor | None) -> list[bytes]:
    """One content hash per image: its rows of `pixel_values` (Qwen: `counts[i]` patch rows; PaliGemma: one
    (C, H, W) row each), their dtype and shape, and its `image_grid_thw` row."""
    flat = pixel_values.detach().contiguous().cpu()
    rows = flat.view(torch.uint8).reshape(flat.shape[0], -1).numpy()  # any dtype (bf16 too) as its bytes
    grid_rows = grid.tolist() if grid is not None else [None] * len(counts)
    keys, start = [], 0
    for count, g in zip(counts, grid_rows, strict=True):
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{flat.dtype}|{tuple(flat.shape[1:])}|{count}|{g}".encode())
        h.update(rows[start : start + count].data)
        keys.append(h.digest())
        start += count
    return keys


def select_images(pixel_values, counts: list[int], grid, indices: list[int]):
    """The pixels (and grid rows) of images `indices`, in that order."""
    if grid is None:
        return pixel_values[indices], None
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    pixels = torch.cat([pixel_values[starts[i] : starts[i + 1]] for i in indices])
    return pixels, grid[indices]


def inner_model(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module whose forward calls `self.get_image_features` (transformers 5's `...Model` under the
    `...ForConditionalGeneration`), or None."""
    inner = getattr(model, "model", None)
    return inner if inner is not None and hasattr(type(inner), "get_image_features") else None


def share_image_features(model: torch.nn.Module, family: str, max_mb: float = 1024) -> VisionCache | None:
    """Put a VisionCache in place of `model`'s image-feature step (module docstring); returns it, or None
    (with one log line) for a family it does not support."""
    inner = inner_model(model)
    if family not in SUPPORTED or inner is None:
        log.info("vision cache: off: model family %r is not supported (%s); the tower runs for every row",
                 family, ", ".join(SUPPORTED))  # fmt: skip
        return None
    cache = VisionCache(inner, family, max_mb)
    inner.get_image_features = cache  # an instance attribute: the class's method stays the unshared path
    return cache


@contextmanager
def unshared(model: torch.nn.Module) -> Iterator[VisionCache | None]:
    """Inside `with`, `model` runs its tower for every row (the unshared path; its tower time still counted):
    benchmarks alternate the two paths on one model."""
    cache = find_vision_cache(model)
    if cache is None:
        yield None
        return
    cache.share = False
    try:
        yield cache
    finally:
        cache.share = True


def find_vision_cache(model: torch.nn.Module) -> VisionCache | None:
    """The VisionCache inside `model` (through peft / Lightning wrappers), or None."""
    for module in model.modules():
        cache = module.__dict__.get("get_image_features")
        if isinstance(cache, VisionCache):
            return cache
    return None
