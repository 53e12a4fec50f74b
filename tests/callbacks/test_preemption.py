"""callbacks.preemption through trainer.fit: SIGTERM mid-training leaves a resumable last.ckpt and exit 143."""

import os
import signal

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from train_helpers import loader, sft_module, tiny_lora, trainer

from medvqa.callbacks.preemption import Preemption, slurm_job_id


class TermAt(L.Callback):
    """Sends this process SIGTERM after optimizer step `step`, as `kill -TERM <pid>` would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_last_ckpt_at_the_step_it_reached_and_exits_143(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    model, processor = tiny_lora()
    t = trainer(max_steps=8, default_root_dir=tmp_path, callbacks=[Preemption(), TermAt(3)])
    with pytest.raises(SIGTERMException) as stopped:
        t.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 16))
    assert stopped.value.code == 143  # Lightning alone exits 0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3 and ckpt["optimizer_states"] and ckpt["loops"]["fit_loop"]
    assert "resume with: python -m medvqa.run" in caplog.text and "ckpt_path=last" in caplog.text
    resumed = trainer(max_steps=8, default_root_dir=tmp_path, callbacks=[Preemption()])
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    resumed.fit(sft_module(model, processor, lr=0.1), loader(processor, 2, 16), ckpt_path=last)
    assert resumed.global_step == 8  # the resumed run finishes the budget from step 3


def test_warning_signals_are_taken_only_in_a_slurm_job_and_given_back(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    cb = Preemption()
    cb.setup(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR1) is before  # outside SLURM USR1 keeps its meaning
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    cb.setup(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR1) == cb._warned and signal.getsignal(signal.SIGUSR2) == cb._warned
    cb.teardown(None, None, "fit")
    assert signal.getsignal(signal.SIGUSR1) is before


def test_slurm_job_id_names_the_array_task(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "38")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert slurm_job_id() == "38_2"  # scontrol requeue takes the array task, not the raw job id
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert slurm_job_id() == "40"
