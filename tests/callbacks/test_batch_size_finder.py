"""Batch-size finder: the largest micro-batch that fits, less the margin, with accumulation keeping the
effective batch. Out-of-memory is simulated above a set batch size."""

import pytest
import torch
from train_helpers import ItemsDataModule, sft_module, tiny_lora, trainer

from medvqa.callbacks.batch_size_finder import EffectiveBatchSizeFinder, accumulation_for, plan_accumulation
from medvqa.callbacks.oom_guard import OOMGuard


def test_plan_accumulation_by_hand():
    assert plan_accumulation(6, 16) == (4, 4)  # 6 fits; 4 is the largest divisor of 16 below it
    assert plan_accumulation(6, 16, exact=False) == (6, 3)  # 18, the nearest from above
    assert plan_accumulation(64, 16) == (16, 1)  # never a micro-batch above the target
    assert plan_accumulation(64, 16, devices=2) == (8, 1)
    assert plan_accumulation(5, 24, devices=2) == (4, 3)  # 12 per device: 4 x 3
    assert plan_accumulation(1, 7) == (1, 7)


def test_effective_batch_size_sets_accumulation():
    assert accumulation_for(16, 4) == 4 and accumulation_for(32, 4, devices=2) == 4
    with pytest.raises(ValueError, match="effective_batch_size=16 is not a multiple of data.batch_size=6"):
        accumulation_for(16, 6)


@pytest.mark.slow  # ~10 search trials with validation, 30-70 s on 2 shared cores (make test-full)
def test_finds_the_largest_fitting_batch_and_keeps_the_effective_batch(capsys, tmp_path):
    """Target 2 x 8 = 16; batches over 9 'run out of memory': binsearch finds 9, the 10% margin gives 8,
    so 8 x 2. The OOM guard must not hide the search's OOMs."""
    model, processor = tiny_lora()

    def oom_over_9(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 9:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB (simulated)")

    model.register_forward_pre_hook(oom_over_9, with_kwargs=True)
    seen = []
    model.register_forward_pre_hook(lambda m, a, k: seen.append(k["input_ids"].shape[0]), with_kwargs=True)
    dm = ItemsDataModule(processor, n=32, batch_size=2)  # > every size tried (Lightning loops when equal)
    finder = EffectiveBatchSizeFinder(steps_per_trial=1, margin=0.1)
    t = trainer(
        max_steps=1, accumulate_grad_batches=8, callbacks=[finder, OOMGuard()], default_root_dir=tmp_path
    )
    t.fit(sft_module(model, processor, max_new_tokens=1), datamodule=dm)
    assert finder.result == {"found": 8, "micro_batch": 8, "accumulation": 2, "devices": 1, "effective_batch": 16,
                             "target": 16}  # fmt: skip
    assert (dm.batch_size, t.accumulate_grad_batches) == (8, 2)
    assert seen[-2:] == [8, 8]  # the real step: two micro-batches of 8
    assert "found batch size 8" in capsys.readouterr().out
