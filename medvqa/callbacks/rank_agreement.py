"""Under DDP every rank must end training with the same weights; a rank that drifted (a non-synchronised
buffer, a rank-dependent branch, a missed gradient all-reduce) would go unnoticed since only rank 0 saves.

At the end of fit each rank hashes its trainable weights, logs the digest with its rank, and the digests
are compared across ranks: a mismatch stops the run naming the ranks. Nothing happens on one device.
"""

from __future__ import annotations

import hashlib
import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy

log = logging.getLogger("medvqa")


def trainable_digest(module: torch.nn.Module) -> str:
    """sha256 over the trainable parameters' names and bytes, in name order."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankAgreement(Callback):
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # DDP only: under FSDP every rank holds a different shard of the weights by design
        if trainer.world_size == 1 or not isinstance(trainer.strategy, DDPStrategy):
            return
        digest = trainable_digest(pl_module)
        log.info("rank %d/%d trainable weights sha256 %s", trainer.global_rank, trainer.world_size, digest)
        digests: list[str] = [""] * trainer.world_size
        # strategy.all_gather takes tensors only; a 64-character string goes through the object gather
        torch.distributed.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            ranks = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
            raise RuntimeError(
                f"ranks ended training with different weights ({ranks}); see the DDP notes in docs/scale.md"
            )
