"""OOM guard: an out-of-memory error in a training step halves the micro-batch and carries on.

Lightning has no in-loop recovery from OOM (an exception ends `fit`), so this callback takes over the
forward and backward of each training batch (single device only):

- the loader batch is run as `chunks` micro-batches (1 at first), each forward then backward with
  `torch.autograd.grad`, which leaves `.grad` untouched unless the whole backward succeeds; the gradients
  are added to `.grad` only then. An OOM in a forward or a backward therefore never leaves half a gradient.
- on OOM: the exception (and with it every activation it references) is dropped, memory is freed,
  `chunks` doubles (micro-batch halves, backward passes per optimizer step double), and the micro-batches
  of this batch not yet done are re-run at the new size. Loader batches, optimizer steps and the LR
  schedule are unchanged, so with the stages' token-count loss scaling (VLMStage.window_mean) the update is
  the same as if the OOM had never happened.
- after `max_failures` OOMs, or when the micro-batch cannot shrink below `min_micro_batch`, the run
  stops with one message saying what to lower.

Validation/generation OOMs and OOMs inside `optimizer.step` are not caught. The state (chunks, failures)
is saved in checkpoints, so a resumed run keeps the reduced micro-batch.
"""

from __future__ import annotations

import gc
import logging
import math
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def batch_size_of(batch: dict[str, Any]) -> int:
    return len(batch["meta"]["id"]) if "meta" in batch else int(batch["input_ids"].shape[0])


def split_batch(batch: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a collated batch (data/collate.py layout) into up to `n` micro-batches of contiguous samples.

    A batch of S samples has R = k * S model rows in k blocks: k = 1 for VQA batches, k = 2 for DPO pairs
    (data/preference.py:PairCollator: rows 0..S-1 chosen, S..2S-1 rejected), so sample i's rows are
    i, S + i, ...; a chunk of samples a..b keeps all their rows, in the same block layout. Per-row tensors
    (first dim R) are indexed by those rows, per-sample ones (first dim S) and `meta` lists sliced by sample.
    Qwen-VL's `pixel_values` is not per row but all images' patches stacked, (sum of t*h*w, dim); it is
    sliced by the patch counts in `image_grid_thw` (one image per row, as the collators build it).
    `meta["batch_row"]` records each sample's index in the loader batch (kept through further splits: GRPO
    keys replayed rollouts by it). `n_skipped` stays with the first chunk.
    """
    size = batch_size_of(batch)
    rows = int(batch["input_ids"].shape[0]) if "input_ids" in batch else size
    if rows % size:
        raise ValueError(
            f"cannot split a batch of {rows} rows for {size} samples: rows must be k blocks of them"
        )
    blocks = rows // size
    meta = batch.get("meta")
    if meta is not None and "batch_row" not in meta:
        meta = meta | {"batch_row": list(range(size))}
    step = math.ceil(size / max(1, n))
    patch_ends = None
    if "image_grid_thw" in batch and "pixel_values" in batch:
        patch_ends = torch.cat([torch.zeros(1, dtype=torch.long), batch["image_grid_thw"].prod(-1).cumsum(0)])
    chunks = []
    for j, a in enumerate(range(0, size, step)):
        b = min(a + step, size)
        spans = [(k * size + a, k * size + b) for k in range(blocks)]  # this chunk's rows, block by block
        row_index = torch.cat([torch.arange(lo, hi) for lo, hi in spans])
        chunk: dict[str, Any] = {}
        for key, value in batch.items():
            if key == "pixel_values" and patch_ends is not None:
                chunk[key] = torch.cat([value[int(patch_ends[lo]) : int(patch_ends[hi])] for lo, hi in spans])
            elif key == "meta":
                chunk[key] = {k: v[a:b] for k, v in meta.items()}
            elif key == "n_skipped":
                chunk[key] = value if j == 0 else 0
            elif torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == rows:
                chunk[key] = value[row_index.to(value.device)]
            elif torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == size:
                chunk[key] = value[a:b]
            else:
                chunk[key] = value
        chunks.append(chunk)
    return chunks


class OOMGuard(L.Callback):
    def __init__(self, max_failures: int = 3, min_micro_batch: int = 1):
        self.max_failures, self.min_micro_batch = max_failures, min_micro_batch
        self.chunks, self.failures = 1, 0
        self._original_step = None
        self._stash: dict[torch.nn.Parameter, torch.Tensor] | None = None
        self._step_done = False

    # -- wiring ------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.world_size > 1:
            raise RuntimeError(
                "callbacks.oom_guard works on one device only (every rank would have to agree on the retry); "
                "drop it from callbacks=[...] or train on one device"
            )
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                f"callbacks.oom_guard needs automatic optimization; {type(pl_module).__name__} steps by hand"
            )
        self._original_step = pl_module.training_step
        pl_module.training_step = lambda batch, batch_idx, *a, **k: self.guarded_step(
            trainer, pl_module, batch, batch_idx
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._original_step is not None:
            del pl_module.training_step  # the instance attribute; the class method shows through again
            self._original_step = None

    def state_dict(self) -> dict[str, int]:
        return {"chunks": self.chunks, "failures": self.failures}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.chunks, self.failures = int(state["chunks"]), int(state["failures"])

    # -- the guarded step --------------------------------------------------------------------------
    def guarded_step(
        self, trainer: L.Trainer, module: L.LightningModule, batch: dict[str, Any], batch_idx: int
    ):
        if self not in trainer.callbacks:  # the batch-size finder's trials: they must see the OOM
            return self._original_step(batch, batch_idx)
        params = [p for p in module.parameters() if p.requires_grad]
        # On a window's first batch Lightning zeroes the gradients *after* training_step returns: keep this
        # batch's gradients aside until on_before_backward, which comes after that zero_grad.
        self._stash = {} if batch_idx % trainer.accumulate_grad_batches == 0 else None
        pending = split_batch(batch, self.chunks)
        while pending:
            window = (getattr(module, "_window_items", None), getattr(module, "_window_ref", None))
            try:
                self._forward_backward(trainer, module, params, pending[0], batch_idx)
                pending.pop(0)
                continue
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                message = str(e).splitlines()[0]
            # out of the except block: the traceback and the activations it held are released
            module._window_items, module._window_ref = window  # the failed micro-batch never counted
            self._recover(trainer, batch_size_of(pending[0]), message)
            pending = [half for chunk in pending for half in split_batch(chunk, 2)]
        # the gradients are in place (or stashed); Lightning's own backward must add nothing
        self._step_done = True
        return torch.zeros((), device=module.device, requires_grad=True)

    def _forward_backward(self, trainer, module, params, chunk, batch_idx) -> None:
        out = self._original_step(chunk, batch_idx)
        loss = out["loss"] if isinstance(out, dict) else out
        precision = trainer.precision_plugin
        # the same scaling Lightning applies: 1/k for accumulation, then fp16's loss scale if any
        scaled = precision.pre_backward(loss / trainer.accumulate_grad_batches, module)
        grads = torch.autograd.grad(scaled, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                _accumulate(self._stash, p, g) if self._stash is not None else _add_grad(p, g)
        precision.post_backward(scaled, module)

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if self._step_done:  # Lightning's backward of our returned zero, not one of the chunks'
            for p, g in (self._stash or {}).items():
                _add_grad(p, g)
            self._stash, self._step_done = None, False

    def _recover(self, trainer: L.Trainer, micro_batch: int, message: str) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.failures += 1
        new_micro = math.ceil(micro_batch / 2)
        if self.failures > self.max_failures or micro_batch <= self.min_micro_batch:
            raise RuntimeError(
                f"OOM guard: out of memory {self.failures} time(s), last at micro-batch {micro_batch} "
                f"(step {trainer.global_step}; callbacks.oom_guard.max_failures={self.max_failures}): {message}. "
                "Lower data.batch_size or data.max_pixels, or set stage.gradient_checkpointing=true or precision=bf16."
            ) from None
        self.chunks *= 2
        metrics = {"oom/failures": self.failures, "oom/micro_batch": new_micro,
                   "oom/accumulation": trainer.accumulate_grad_batches * self.chunks}  # fmt: skip
        log.warning("OOM guard: out of memory at micro-batch %d (step %d); retrying at micro-batch %d, "
                    "%d backward passes per optimizer step", micro_batch, trainer.global_step, new_micro,
                    metrics["oom/accumulation"])  # fmt: skip
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def _add_grad(p: torch.nn.Parameter, g: torch.Tensor) -> None:
    p.grad = g if p.grad is None else p.grad.add_(g)


def _accumulate(stash: dict, p: torch.nn.Parameter, g: torch.Tensor) -> None:
    stash[p] = g if p not in stash else stash[p].add_(g)
