"""A run resumed from last.ckpt after a kill ends with the same metrics and weights as an unbroken run."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import RandomSampler, SequentialSampler
from train_helpers import tiny_run

from medvqa.callbacks.resume import ResumableSampler, rng_state, set_rng_state
from medvqa.data.sampling import TrainSampler
from medvqa.run import compose_config as compose_cfg
from medvqa.run import train

# lora dropout on, so the restored RNG matters; the kill lands in epoch 1 (6 batches per epoch), mid-epoch;
# the test uses the last weights (best could be an early checkpoint both runs share)
EXTRA = ["peft.lora_dropout=0.1", "test_weights=last"]  # test the final weights, not the best


def _run(data_dir, out, *extra):
    cfg = compose_cfg(tiny_run(data_dir, *EXTRA, *extra), out)
    return train(cfg)


def _adapter(out):
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow  # three short runs, ~35 s; the bar of issue 5 (make test-full)
def test_resume_after_kill_matches_unbroken_run(data_dir, tmp_path):
    unbroken = _run(data_dir, tmp_path / "a")
    killed = tmp_path / "b"
    with pytest.raises(RuntimeError, match="killed at step 9"):
        _run(data_dir, killed, "+callbacks.kill._target_=train_helpers.KillAt", "+callbacks.kill.step=9")
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["epoch"] == 1  # saved mid-epoch 1, 2 batches into it
    assert all("lora_" in k or k.startswith("scores.") for k in ckpt["state_dict"])  # no frozen base weights
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"] and ckpt["loops"]["fit_loop"]
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ResumeState"))
    assert (state["epoch"], state["batches_done"], state["batch_size"]) == (1, 2, 4)
    resumed = _run(data_dir, killed, "ckpt_path=last")
    assert resumed["test"] == pytest.approx(unbroken["test"], abs=1e-6)
    assert resumed["val"] == pytest.approx(unbroken["val"], abs=1e-6)
    a, b = _adapter(tmp_path / "a"), _adapter(killed)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)
    assert json.loads((killed / "metrics.json").read_text())["test"] == pytest.approx(
        unbroken["test"], abs=1e-6
    )


def test_ckpt_path_last_without_checkpoint_is_an_error(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path=last but .*last.ckpt does not exist"):
        _run(data_dir, tmp_path, "ckpt_path=last")


def _shuffle(n: int) -> RandomSampler:
    return RandomSampler(range(n), generator=torch.Generator().manual_seed(0))


def test_sampler_order_depends_on_seed_and_epoch_and_resumes_mid_epoch():
    s = ResumableSampler(_shuffle(10), seed=3)
    s.set_epoch(1)
    epoch1 = list(s)
    assert sorted(epoch1) == list(range(10)) and epoch1 != s.order(0)
    assert epoch1 == ResumableSampler(_shuffle(10), 3).order(1) != ResumableSampler(_shuffle(10), 4).order(1)
    resumed = ResumableSampler(_shuffle(10), seed=3, resume_epoch=1, skip=4)
    resumed.set_epoch(1)
    assert list(resumed) == epoch1[4:] and len(resumed) == 10  # length kept: Lightning's counters agree
    assert list(resumed) == epoch1  # the skip applies to the first pass only
    assert list(ResumableSampler(SequentialSampler(range(5)), 3)) == [0, 1, 2, 3, 4]  # file order stays


def test_sampler_keeps_a_train_samplers_order_per_epoch():
    """TrainSampler advances its own epoch on every pass; wrapped, epoch e is its order for e, however
    often it was iterated before (a resumed run starts at epoch e with a fresh sampler)."""
    inner = TrainSampler(20, 4, weights=[1.0] * 20, lengths=list(range(20)), seed=5)
    wrapped = ResumableSampler(inner, seed=5, resume_epoch=1, skip=8)
    wrapped.set_epoch(1)
    fresh = TrainSampler(20, 4, weights=[1.0] * 20, lengths=list(range(20)), seed=5)
    fresh.set_epoch(1)
    assert list(wrapped) == list(fresh)[8:]
    for _ in range(3):
        list(wrapped)  # passes without set_epoch do not move the order
    fresh.set_epoch(1)
    assert list(wrapped) == list(fresh) and wrapped.order(0) != wrapped.order(1)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    state = rng_state()
    torch.save({"rng": state}, tmp_path / "x.ckpt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(torch.load(tmp_path / "x.ckpt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0]) and (np.random.rand(3) == expected[1]).all()
    assert [random.random() for _ in range(3)] == expected[2]


def test_default_callbacks_keep_the_datamodules_train_sampler(data_dir, tmp_path):
    """With resume_state in the callbacks, training sees the TrainSampler's order (length grouping and
    source weights), epoch by epoch: batches of similar lengths, drawn with replacement, a new order per epoch."""
    from medvqa.run import build

    extra = ["data.group_by_length=true", "data.sampling_weights={synthetic: 1.0}",
             "+callbacks.record._target_=train_helpers.RecordBatches", f"+callbacks.record.path={tmp_path / 'b.json'}"]  # fmt: skip
    cfg = compose_cfg(tiny_run(data_dir, *extra), tmp_path / "run")
    train(cfg)
    seen = json.loads((tmp_path / "b.json").read_text())
    assert len(seen) == 10  # 6 batches in epoch 0, 4 in epoch 1 (max_steps=10)
    _, dm, _ = build(cfg)
    dm.setup("fit")
    sampler, train_ids = dm.train_sampler(), [s.id for s in dm.splits["train"]]
    expected = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = [train_ids[i] for i in sampler]
        expected += [order[i : i + 4] for i in range(0, len(order), 4)]
    assert seen == expected[:10]
    assert seen[:4] != expected[6:10]  # the second epoch is a different order
    assert len({i for b in seen[:6] for i in b}) < 24  # source weights draw with replacement: repeats
