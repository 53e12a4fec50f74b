"""OOM guard, tested by simulating the error in the forward and in the backward."""

import pytest
import torch
from train_helpers import items, loader, sft_module, tiny_lora, trainable, trainer

from medvqa.callbacks.oom_guard import OOMGuard, split_batch
from medvqa.data.collate import VQACollator


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
