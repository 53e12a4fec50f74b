"""Checkpoints written atomically: a kill mid-write never leaves a truncated `last.ckpt`.

Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file lives in the
system temp folder; on commit it is moved into place, which across filesystems (a /tmp in RAM, outputs on
a network disk) is a copy, not a rename, and nothing is fsynced. Here the bytes go to a temporary file in
the destination folder, are fsynced, and `os.replace` swaps it in: the old checkpoint stays readable until
the new one is complete. Remote URLs (s3://...) keep Lightning's own writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
