"""GRPO pieces against numbers worked by hand."""

import math

import pytest
import torch

from medvqa.losses.grpo import (
    aggregate,
    clipped_objective,
    group_advantages,
    grpo_loss,
    k3_kl,
    reward_sums,
    std_from_sums,
)


def test_group_with_equal_rewards_has_zero_advantage_not_nan():
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 2.0]), num_generations=4)
    assert adv[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert not torch.isnan(adv).any()


def test_group_std_scaling():
    # group (1, 0, 0, 1): mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.5773503 -> +-0.8660254
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 4, "group", eps=0.0)
    assert adv.tolist() == pytest.approx([0.8660254, -0.8660254, -0.8660254, 0.8660254], abs=1e-6)


def test_batch_std_and_no_scaling():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])  # groups of 2: means 0.5 and 3
    assert group_advantages(rewards, 2, "none").tolist() == [0.5, -0.5, 0.0, 0.0]
    # batch unbiased std: mean 1.75, squares 0.5625 + 3.0625 + 1.5625 + 1.5625 = 6.75, / 3 = 2.25 -> 1.5
    assert group_advantages(rewards, 2, "batch", eps=0.0).tolist() == pytest.approx([1 / 3, -1 / 3, 0.0, 0.0])


def test_batch_std_given_from_the_whole_batch():
    """The micro-batch (1, 0, 3, 3) is one rank's part of a batch whose other rank holds (1, 1, 1, 1): the std
    is the whole batch's, from the summed (count, sum, sum of squares) of both ranks."""
    mine, other = torch.tensor([1.0, 0.0, 3.0, 3.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert reward_sums(mine).tolist() == [4.0, 7.0, 19.0]
    # all 8: mean 11/8, sum of squares 23, unbiased var (23 - 121/8) / 7 = 63/56 = 1.125 -> std 1.0606602
    std = std_from_sums(reward_sums(mine) + reward_sums(other))
    assert float(std) == pytest.approx(math.sqrt(1.125))
    adv = group_advantages(mine, 2, "batch", eps=0.0, batch_std=std)
    assert adv.tolist() == pytest.approx([0.5 / 1.0606602, -0.5 / 1.0606602, 0.0, 0.0], abs=1e-6)
    assert float(std_from_sums(reward_sums(mine))) == pytest.approx(1.5)  # one rank alone: today's number
    assert float(std_from_sums(reward_sums(torch.tensor([2.0])))) == 0.0  # one reward: no spread, not NaN


def test_group_shape_errors_name_the_key():
    with pytest.raises(ValueError, match="num_generations"):
        group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.ones(4), 2, "std")


def test_k3_is_zero_when_policy_equals_reference_and_positive_otherwise():
    logp = torch.tensor([[-0.5, -2.0, -7.0]])
    assert k3_kl(logp, logp.clone()).tolist() == [[0.0, 0.0, 0.0]]
    # d = ref - logp = log 2: exp(d) - d - 1 = 2 - 0.6931472 - 1 = 0.3068528
    assert k3_kl(torch.tensor([[-1.0]]), torch.tensor([[-1.0 + math.log(2)]])).item() == pytest.approx(
        0.3068528
    )


def test_clipping_on_both_sides():
    # ratios 1.5 (row 0, 1) and 0.5 (row 2, 3); advantages +1, -1, -1, +1; eps 0.2
    old = torch.zeros(4, 1)
    logp = torch.log(torch.tensor([[1.5], [1.5], [0.5], [0.5]])).requires_grad_()
    loss, low, high = clipped_objective(logp, old, torch.tensor([1.0, -1.0, -1.0, 1.0]), 0.2, 0.2)
    # -min(1.5, 1.2) = -1.2 (clipped high); -min(-1.5, -1.2) = 1.5; -min(-0.5, -0.8) = 0.8 (clipped low); -0.5
    assert loss.squeeze(1).tolist() == pytest.approx([-1.2, 1.5, 0.8, -0.5])
    assert high.squeeze(1).tolist() == [True, False, False, False]
    assert low.squeeze(1).tolist() == [False, False, True, False]
    loss.sum().backward()
    # clipped tokens get no gradient; others get -A * ratio
    assert logp.grad.squeeze(1).tolist() == pytest.approx([0.0, 1.5, 0.0, -0.5])


def test_asymmetric_epsilons():
    old, logp = torch.zeros(1, 1), torch.log(torch.tensor([[1.25]]))
    loss, _, high = clipped_objective(logp, old, torch.tensor([2.0]), epsilon_low=0.2, epsilon_high=0.28)
    assert loss.item() == pytest.approx(-2.5) and not high.item()  # 1.25 < 1.28: not clipped


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])  # 9s are padding
SECOND = (torch.tensor([[6.0, 7.0]]), torch.tensor([[1, 0]]))  # a second micro-batch: one 1-token sequence


def _pair(loss_type, per_token=PER_TOKEN, mask=MASK):
    total, count = aggregate(per_token, mask, loss_type, 5)
    return total.item(), count.item()


def test_aggregation_variants_on_one_micro_batch():
    assert _pair("grpo") == pytest.approx((6 / 3 + 4 / 1, 2))  # mean 3
    assert _pair("dapo") == pytest.approx((10, 4))  # mean 2.5
    assert _pair("bnpo") == pytest.approx((2.5, 1))
    assert _pair("dr_grpo") == pytest.approx((10, 2 * 5))  # mean 1
    with pytest.raises(ValueError, match="stage.loss_type"):
        aggregate(PER_TOKEN, MASK, "ppo", 5)


@pytest.mark.parametrize(
    ("loss_type", "window_loss"),
    [
        ("grpo", (2 + 4 + 6) / 3),  # mean over the window's 3 sequences
        ("dapo", (10 + 6) / 5),  # token mean over the window's 5 tokens
        ("bnpo", (2.5 + 6) / 2),  # mean of the two micro-batch token means
        ("dr_grpo", (10 + 6) / (3 * 5)),  # sum over 3 sequences x max length 5
    ],
)
def test_aggregation_over_an_accumulation_window(loss_type, window_loss):
    """Two micro-batches accumulated: sum of totals / sum of counts (what VLMStage.window_mean applies)."""
    (t1, c1), (t2, c2) = _pair(loss_type), _pair(loss_type, *SECOND)
    assert (t1 + t2) / (c1 + c2) == pytest.approx(window_loss)


def test_grpo_loss_adds_beta_times_kl_and_reports_stats():
    logp = torch.zeros(2, 2)
    ref = torch.full((2, 2), math.log(2))  # k3 = 0.3068528 on every token
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([1.0, -1.0])
    # ratio 1 everywhere: per-token -A -> (-1, -1) and (+1); dapo mean = -1/3; plus 0.1 * 0.3068528
    total, count, stats = grpo_loss(logp, logp.detach(), adv, mask, ref_logp=ref, beta=0.1, loss_type="dapo")
    assert count.item() == 3
    assert (total / count).item() == pytest.approx(-1 / 3 + 0.1 * 0.3068528, abs=1e-6)
    assert stats["kl"].item() == pytest.approx(0.3068528, abs=1e-6)
    assert stats["clip_fraction"].item() == 0.0
    *_, no_ref = grpo_loss(logp, logp.detach(), adv, mask)
    assert "kl" not in no_ref
