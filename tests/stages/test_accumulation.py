"""Gradient accumulation: the update does not depend on the micro-batch split, and clipping sees the
accumulated gradient."""

import pytest
import torch
from train_helpers import loader, sft_module, tiny_lora, trainable, trainer


def _update(batch_size: int, accumulate: int, clip: float | None = None) -> dict[str, torch.Tensor]:
    """One SGD(lr=1) step over the same 16 samples split as accumulate x batch_size: returns -gradient
    (or the clipped step)."""
    model, processor = tiny_lora()
    before = trainable(model)
    module = sft_module(model, processor, lr=1.0)
    trainer(accumulate_grad_batches=accumulate, gradient_clip_val=clip).fit(
        module, loader(processor, batch_size)
    )
    return {n: p.detach() - before[n] for n, p in model.named_parameters() if p.requires_grad}


def _flat(update: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten() for v in update.values()])


@pytest.fixture(scope="module")
def one_by_sixteen():
    return _flat(_update(16, 1))


def test_one_by_sixteen_equals_four_by_four(one_by_sixteen):
    four_by_four = _flat(_update(4, 4))
    assert one_by_sixteen.norm() > 1e-3
    torch.testing.assert_close(four_by_four, one_by_sixteen, rtol=1e-4, atol=1e-6)


def test_mean_of_micro_batch_means_would_differ(one_by_sixteen):
    """The split matters for the naive loss (answers of 1 to 9 tokens): the test above can fail."""
    from train_helpers import items

    from medvqa.data.collate import VQACollator

    model, processor = tiny_lora()
    collate = VQACollator(processor)
    data = items(16)
    module = sft_module(model, processor)
    naive = []
    for i in range(4):
        total, count = module.answer_loss(collate(data[4 * i : 4 * i + 4]))
        naive.append(float(total / count))
    total, count = module.answer_loss(collate(data))
    assert abs(sum(naive) / 4 - float(total / count)) > 1e-3


def test_clipping_sees_the_accumulated_gradient(one_by_sixteen):
    """With clip c the 4 x 4 step is -c * g / |g| for the full-batch gradient g: clipping each micro-batch
    (norm up to 4c) or the unnormalised sum (norm c / tokens) would both fail this."""
    clip = 0.25 * float(one_by_sixteen.norm())
    clipped = _flat(_update(4, 4, clip=clip))
    assert float(clipped.norm()) == pytest.approx(clip, rel=1e-3)
    torch.testing.assert_close(clipped, one_by_sixteen * (clip / one_by_sixteen.norm()), rtol=1e-4, atol=1e-6)
