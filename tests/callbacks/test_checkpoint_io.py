"""Checkpoints are written atomically: a crash mid-write leaves the previous file whole."""

import pytest
import torch

import medvqa.callbacks.checkpoint_io as cio
from medvqa.callbacks.checkpoint_io import AtomicCheckpointIO


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(cio.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind
    io.save_checkpoint({"global_step": 2}, path)
    assert io.load_checkpoint(path)["global_step"] == 2


def test_trainer_config_uses_it():
    from medvqa.run import compose_config as compose_cfg

    cfg = compose_cfg([])
    assert cfg.trainer.plugins[0]._target_ == "medvqa.callbacks.checkpoint_io.AtomicCheckpointIO"
