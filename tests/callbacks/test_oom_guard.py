"""OOM guard, tested by simulating the error in the forward and in the backward."""

from functools import partial
from unittest import mock

import pytest
import torch
from torch.utils.data import DataLoader
from train_helpers import items, loader, sft_module, tiny_lora, trainable, trainer

from medvqa.callbacks.oom_guard import OOMGuard, split_batch
from medvqa.data.collate import VQACollator
from medvqa.data.preference import PairCollator
from medvqa.stages.base import model_inputs
from medvqa.stages.dpo import DPOModule, answer_logps
from medvqa.stages.grpo import GRPOModule


def _raise_over(limit: int):
    def hook(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    return hook


def _raise_in_backward_over(limit: int):
    def hook(module, grad_output):
        if grad_output[0].shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")

    return hook


def _train(batch_size, accumulate, steps, guard=None, forward_limit=None, backward_limit=None, n=16):
    model, processor = tiny_lora()
    if forward_limit is not None:
        model.register_forward_pre_hook(_raise_over(forward_limit), with_kwargs=True)
    if backward_limit is not None:
        model.base_model.model.lm_head.register_full_backward_pre_hook(
            _raise_in_backward_over(backward_limit)
        )
    module = sft_module(model, processor, lr=0.5)
    callbacks = [guard] if guard else []
    trainer(max_steps=steps, accumulate_grad_batches=accumulate, callbacks=callbacks).fit(
        module, loader(processor, batch_size, n)
    )
    return trainable(model)


def _assert_trained(params):
    initial = trainable(tiny_lora()[0])
    assert max(float((params[n] - initial[n]).abs().max()) for n in initial) > 1e-2


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_split_batch_keeps_the_loss(family):
    """Summed loss and token count over the chunks equal the full batch's (Qwen: patches split by grid)."""
    model, processor = tiny_lora(family)
    module = sft_module(model, processor)
    batch = VQACollator(processor)(items(5))
    total, count = module.answer_loss(batch)
    chunks = split_batch(batch, 2)
    assert [len(c["meta"]["id"]) for c in chunks] == [3, 2]
    parts = [module.answer_loss(c) for c in chunks]
    assert float(sum(c for _, c in parts)) == float(count)
    assert float(sum(t for t, _ in parts)) == pytest.approx(float(total), rel=1e-5)


def test_forward_oom_halves_the_micro_batch_and_matches_an_unbroken_run():
    reference = _train(8, 1, steps=2)
    guard = OOMGuard(max_failures=3)
    guarded = _train(8, 1, steps=2, guard=guard, forward_limit=2)
    assert (guard.chunks, guard.failures) == (4, 2)  # 8 -> 4 -> 2
    _assert_trained(guarded)
    for name, value in reference.items():
        torch.testing.assert_close(guarded[name], value, rtol=1e-4, atol=1e-6)


def test_backward_oom_keeps_the_window_gradients():
    """OOM in the backward of the 2nd micro-batch of a window: the 1st one's gradient must survive."""
    reference = _train(4, 2, steps=2)
    guard = OOMGuard()
    guarded = _train(4, 2, steps=2, guard=guard, backward_limit=2)
    assert (guard.chunks, guard.failures) == (2, 1)
    _assert_trained(guarded)
    for name, value in reference.items():
        torch.testing.assert_close(guarded[name], value, rtol=1e-4, atol=1e-6)


def test_gives_up_after_max_failures_with_a_clear_message():
    with pytest.raises(
        RuntimeError, match=r"OOM guard: out of memory 2 time\(s\).*stage.gradient_checkpointing"
    ):
        _train(16, 1, steps=1, guard=OOMGuard(max_failures=1), forward_limit=0)


def test_other_errors_pass_through():
    def broken(module, args, kwargs):
        raise RuntimeError("shape mismatch")

    model, processor = tiny_lora()
    model.register_forward_pre_hook(broken, with_kwargs=True)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        trainer(callbacks=[OOMGuard()]).fit(sft_module(model, processor), loader(processor, 4, 4))


def _pair_loader(processor, n: int = 8, batch_size: int = 4) -> DataLoader:
    pairs = [
        it | {"rejected": "no" if it["sample"].answer != "no" else "yes", "source": "mined"}
        for it in items(n)
    ]
    return DataLoader(
        pairs, batch_size=batch_size, shuffle=False, collate_fn=PairCollator(VQACollator(processor))
    )


def test_split_pair_batch_keeps_each_pairs_chosen_and_rejected_rows_together():
    """DPO batches hold B pairs as 2B rows: a chunk of pairs a..b holds chosen rows a..b and rejected rows
    B+a..B+b (with their image patches), so every row's answer log-prob is the one it had in the full batch."""
    model, processor = tiny_lora()
    batch = next(iter(_pair_loader(processor, n=5, batch_size=5)))
    with torch.no_grad():
        full = answer_logps(model, model_inputs(batch))  # (10,): chosen 0..4, rejected 0..4
        chunks = split_batch(batch, 2)
        parts = [answer_logps(model, model_inputs(c)) for c in chunks]
    assert [len(c["meta"]["id"]) for c in chunks] == [3, 2] and [p.shape[0] for p in parts] == [6, 4]
    assert [c["meta"]["batch_row"] for c in chunks] == [[0, 1, 2], [3, 4]]
    chosen = torch.cat([parts[0][:3], parts[1][:2]])
    rejected = torch.cat([parts[0][3:], parts[1][2:]])
    torch.testing.assert_close(torch.cat([chosen, rejected]), full, rtol=1e-5, atol=1e-5)


def _train_dpo(guard=None, forward_limit=None):
    model, processor = tiny_lora()
    if forward_limit is not None:
        model.register_forward_pre_hook(_raise_over(forward_limit), with_kwargs=True)
    module = DPOModule(model, processor, optimizer=partial(torch.optim.SGD, lr=0.5), beta=0.5)
    trainer(max_steps=2, callbacks=[guard] if guard else []).fit(module, _pair_loader(processor))
    return trainable(model)


def test_dpo_forward_oom_splits_pairs_and_matches_an_unbroken_run():
    """An OOM in a DPO step (4 pairs = 8 rows; anything above 4 rows fails): the step completes on chunks of
    2 pairs, and the update equals the no-OOM one."""
    reference = _train_dpo()
    guard = OOMGuard(max_failures=3)
    guarded = _train_dpo(guard, forward_limit=4)
    assert (guard.chunks, guard.failures) == (2, 1)
    _assert_trained(guarded)
    for name, value in reference.items():
        torch.testing.assert_close(guarded[name], value, rtol=1e-4, atol=1e-6)


def test_grpo_replay_stays_aligned_when_the_guard_splits_a_batch():
    """num_iterations=2: optimizer step 0 samples one rollout per micro-batch, step 1 replays them. The guard
    splits step 0's batch of 4 prompts (8 rows, G=2) into two chunks of 2 prompts: step 1's chunks must
    replay exactly those two rollouts, each its own, and sample nothing new."""
    model, processor = tiny_lora()
    model.register_forward_pre_hook(_raise_over(4), with_kwargs=True)
    module = GRPOModule(model, processor, optimizer=partial(torch.optim.SGD, lr=0.1), num_generations=2,
                        max_completion_length=3, num_iterations=2, reward_weights={"answer_match": 1.0},
                        log_completions_every_n_steps=0)  # fmt: skip
    used = []  # (optimizer step, rollout) for every chunk that computed its loss
    policy_logps = module.policy_logps

    def record(rollout):
        used.append((module.trainer.global_step, rollout))
        return policy_logps(rollout)

    module.policy_logps = record
    with mock.patch.object(module, "sample", wraps=module.sample) as sample:
        trainer(max_steps=2, callbacks=[OOMGuard()]).fit(module, loader(processor, 4, 8))
    step0 = [r for s, r in used if s == 0]
    step1 = [r for s, r in used if s == 1]
    assert len(step0) == 2 and [r.fields["id"][::2] for r in step0] == [["0", "1"], ["2", "3"]]
    assert len(step1) == 2 and all(a is b for a, b in zip(step1, step0, strict=True))
    assert sample.call_count == 3  # the full batch (its old-log-prob pass ran out of memory), then 2 chunks
