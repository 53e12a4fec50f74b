"""Logs what the vision cache (medvqa/models/vision_cache.py) saved, and switches its reuse across batches
off while the training split is augmented (every pass then shows new pixels: keeping them only fills
memory).

Per optimizer step: `train/vision_cache_hit_rate` (rows of the step's model calls whose image features
came from another row or the cache, of all image rows) and `train/vision_tower_saved_s` (the tower seconds
saved so far: rows not encoded times the mean measured seconds per encoded image).
"""

from __future__ import annotations

import logging

import lightning as L

from medvqa.models.vision_cache import find_vision_cache

log = logging.getLogger(__name__)


class VisionCacheLog(L.Callback):
    def __init__(self) -> None:
        self.cache = None
        self._last: dict[str, float] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cache = find_vision_cache(pl_module.model)
        if self.cache is None:
            return
        augment = getattr(trainer.datamodule, "augment", None) if trainer.datamodule is not None else None
        if augment is not None and getattr(augment, "transforms", [augment]):
            self.cache.disable_across(f"the training split is augmented (augment: {augment!r})")
        self._last = self.cache.stats()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.cache is None:
            return
        now = self.cache.stats()
        rows = now["images"] - self._last.get("images", 0)
        if rows:
            hits = now["batch_hits"] + now["cache_hits"] - self._last["batch_hits"] - self._last["cache_hits"]
            pl_module.log("train/vision_cache_hit_rate", hits / rows, on_step=True, batch_size=1)
            pl_module.log("train/vision_tower_saved_s", now["saved_s"], on_step=True, batch_size=1)
        self._last = now

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.cache is None:
            return
        s = self.cache.stats()
        log.info("vision cache: %d image rows, %d encoded (%.0f%% reused: %d in-batch, %d cached), about %.1f s "
                 "of tower time saved, %.1f MB held", s["images"], s["computed"], 100 * s["hit_rate"],
                 s["batch_hits"], s["cache_hits"], s["saved_s"], s["cached_mb"])  # fmt: skip
        if self.cache.off_reason and self.cache.off_reason.startswith("the training split is augmented"):
            self.cache.off_reason = None  # evaluation after fit is never augmented
