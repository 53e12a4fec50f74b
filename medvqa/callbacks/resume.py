"""Exact resume: a run continued from `last.ckpt` after a kill ends where the unbroken run would have.

Lightning's checkpoint holds the trainable weights (see VLMStage.on_save_checkpoint), optimizer, LR
scheduler, loop counters and callback states, but two things a mid-epoch resume needs are missing:

- where the epoch's data order was: a plain shuffling DataLoader starts the epoch over (Lightning warns
  "your dataloader is not resumable"), and its shuffle generator restarts, so the rest of the run sees
  other batches. Here the training loader's own sampler (the datamodule's TrainSampler, a shuffle, file
  order) is wrapped so each epoch's order is a pure function of (seed, epoch) and, on resume, the samples
  the checkpointed epoch had already used are skipped.
- the random state (dropout, sampling): saved with the checkpoint and restored just before the first
  resumed batch. Augmentations that draw from the main process's global RNG while loading (num_workers=0)
  are fetched one batch ahead of training and so are not replayed exactly; seed them per sample.
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

log = logging.getLogger(__name__)


class ResumableSampler(Sampler[int]):
    """The train loader's own sampler, with each epoch's order a pure function of (seed, epoch) and the first
    pass over `resume_epoch` skipping its first `skip` indices.

    The order is the wrapped sampler's: one with `set_epoch` (the datamodule's TrainSampler, with its length
    grouping and source weights; a DistributedSampler) is set to the epoch before every pass; a RandomSampler
    (`shuffle=True`) draws from a generator seeded with (seed, epoch), keeping its replacement and num_samples;
    any other (sequential) is iterated as it is. Its length stays the wrapped sampler's, so Lightning's batch
    counts agree with the restored loop counters."""

    def __init__(self, sampler: Sampler[int], seed: int = 0, resume_epoch: int = -1, skip: int = 0):
        self.sampler, self.seed = sampler, seed
        self.epoch, self.resume_epoch, self.skip = 0, resume_epoch, skip

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def order(self, epoch: int) -> list[int]:
        sampler = self.sampler
        if isinstance(sampler, RandomSampler):  # its own generator advances per pass: reseed it per epoch
            sampler = copy.copy(sampler)
            sampler.generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        elif hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self):
        start = self.skip if self.epoch == self.resume_epoch else 0
        self.skip = 0
        yield from self.order(self.epoch)[start:]


class ResumableLoader(DataLoader):
    """A DataLoader whose position ResumeState saves and restores (through its ResumableSampler). The
    state_dict interface tells Lightning the loader resumes mid-epoch exactly, so it does not warn
    "your dataloader is not resumable"; the position itself lives in ResumeState's checkpoint entry."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain numbers (checkpoints load with torch.load(weights_only=True))."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(L.Callback):
    def __init__(self):
        self._epoch, self._batches_done, self._batch_size = -1, 0, 0
        self._restored: dict[str, Any] | None = None
        self._val_metrics: dict[str, float] = {}  # the last validation's, so a resumed run reports them too

    # -- the loader ----------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None:
            return
        original = dm.train_dataloader
        dm.train_dataloader = lambda: self._resumable(
            original(), int(getattr(dm, "hparams", {}).get("seed", 0))
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if dm is not None and "train_dataloader" in vars(dm):
            del dm.train_dataloader

    def _resumable(self, loader: DataLoader, seed: int) -> DataLoader:
        """The same loader, its sampler wrapped in a ResumableSampler (Lightning re-requests the loader when
        the batch size changes)."""
        if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
            raise TypeError(
                f"callbacks.resume_state: the train loader's batch_sampler {type(loader.batch_sampler).__name__} "
                "cannot be resumed mid-epoch; give the loader a sampler and batch_size, or drop resume_state "
                "(callbacks.resume_state=null) if the loader is stateful itself"
            )
        r = self._restored or {}
        skip = r.get("batches_done", 0) * r.get("batch_size", 0)
        sampler = ResumableSampler(loader.sampler, seed, r.get("epoch", -1), skip)
        workers = loader.num_workers
        return ResumableLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
            worker_init_fn=loader.worker_init_fn, generator=loader.generator,
            persistent_workers=loader.persistent_workers, prefetch_factor=loader.prefetch_factor if workers else None,
        )  # fmt: skip

    # -- counting and saving -----------------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_metrics = {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for k, v in self._val_metrics.items():  # restored ones; a later validation replaces them
            trainer.callback_metrics.setdefault(k, torch.tensor(v))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._restored is not None:
            set_rng_state(self._restored["rng"])
            if self._batches_done:
                log.info("resumed in epoch %d after %d of its batches", self._epoch, self._batches_done)
            self._restored = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch != self._epoch:
            self._epoch, self._batches_done = trainer.current_epoch, 0
        self._batches_done += 1
        self._batch_size = trainer.train_dataloader.batch_size if trainer.train_dataloader is not None else 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "batches_done": self._batches_done, "batch_size": self._batch_size,
                "rng": rng_state(), "val_metrics": dict(self._val_metrics)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)
        self._epoch, self._batches_done, self._batch_size = (
            state["epoch"],
            state["batches_done"],
            state["batch_size"],
        )
        self._val_metrics = dict(state.get("val_metrics", {}))
