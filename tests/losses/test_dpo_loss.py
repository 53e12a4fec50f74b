"""DPO losses against numbers worked by hand on a 2-pair batch.

Pairs: policy chosen/rejected = (-1, -3) and (-2, -1); reference = -2 everywhere; beta = 0.5.
h = (pol_c - ref_c) - (pol_r - ref_r) = (1 - (-1), 0 - 1) = (2, -1); beta * h = (1, -0.5).
sigmoid: -log sigmoid(1) = log(1 + e^-1) = 0.3132617, -log sigmoid(-0.5) = log(1 + e^0.5) = 0.9740770.
"""

import math

import pytest
import torch

from medvqa.losses.dpo import dpo_loss, sequence_logps

POL_C, POL_R = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
REF = torch.tensor([-2.0, -2.0])


def _loss(**kw):
    return dpo_loss(POL_C, POL_R, REF, REF, beta=0.5, **kw)


def test_sigmoid_on_two_pairs():
    loss, chosen, rejected = _loss(loss_type="sigmoid")
    assert loss.tolist() == pytest.approx([0.3132617, 0.9740770], abs=1e-6)
    assert chosen.tolist() == [0.5, 0.0] and rejected.tolist() == [-0.5, 0.5]  # beta * (pol - ref)


def test_label_smoothing_adds_the_flipped_term():
    # -(0.9) log s(1) - 0.1 log s(-1) = 0.9 * 0.3132617 + 0.1 * 1.3132617 = 0.4132617
    loss, _, _ = _loss(loss_type="sigmoid", label_smoothing=0.1)
    assert loss[0].item() == pytest.approx(0.4132617, abs=1e-6)


def test_ipo_regresses_margin_to_one_over_two_beta():
    ones = torch.ones(2)
    loss, _, _ = _loss(loss_type="ipo", chosen_tokens=ones, rejected_tokens=ones)  # 1 token: h as summed
    assert loss.tolist() == pytest.approx([1.0, 4.0])  # target 1 / (2 * 0.5) = 1: (2 - 1)^2, (-1 - 1)^2


def test_ipo_length_normalises_each_side():
    """As TRL (agreed with the IPO authors): each sequence's log-prob is divided by its answer tokens.
    Chosen tokens (1, 2), rejected (2, 4): chosen ratios (1, 0) / (1, 2) = (1, 0); rejected ratios
    (-1, 1) / (2, 4) = (-0.5, 0.25); h = (1.5, -0.25); loss (1.5 - 1)^2 = 0.25, (-0.25 - 1)^2 = 1.5625."""
    loss, chosen, rejected = _loss(
        loss_type="ipo", chosen_tokens=torch.tensor([1, 2]), rejected_tokens=torch.tensor([2, 4])
    )
    assert loss.tolist() == pytest.approx([0.25, 1.5625])
    assert chosen.tolist() == pytest.approx([0.5, 0.0]) and rejected.tolist() == pytest.approx([-0.25, 0.125])
    # a pair k times as long with the same per-token log-probs has the same loss: the target is length-free
    longer, _, _ = dpo_loss(POL_C * 3, POL_R * 3, REF * 3, REF * 3, beta=0.5, loss_type="ipo",
                            chosen_tokens=torch.tensor([3, 6]), rejected_tokens=torch.tensor([6, 12]))  # fmt: skip
    assert longer.tolist() == pytest.approx(loss.tolist())


def test_ipo_needs_the_token_counts():
    with pytest.raises(ValueError, match="token counts"):
        _loss(loss_type="ipo")


def test_hinge():
    loss, _, _ = _loss(loss_type="hinge")  # max(0, 1 - 1), max(0, 1 + 0.5)
    assert loss.tolist() == pytest.approx([0.0, 1.5])


def test_gradient_raises_chosen_and_lowers_rejected():
    pol_c, pol_r = POL_C.clone().requires_grad_(), POL_R.clone().requires_grad_()
    dpo_loss(pol_c, pol_r, REF, REF, beta=0.5)[0].sum().backward()
    # d/dpol_c of -log s(beta h) = -beta * s(-beta h): -0.5 * s(-1) = -0.1344707
    assert pol_c.grad[0].item() == pytest.approx(-0.5 / (1 + math.e), abs=1e-6)
    assert (pol_c.grad < 0).all() and (pol_r.grad > 0).all()


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="stage.loss_type"):
        _loss(loss_type="kto")
    with pytest.raises(ValueError, match="stage.beta"):
        dpo_loss(POL_C, POL_R, REF, REF, beta=0.0)


def test_sequence_logps_sums_only_supervised_next_tokens():
    # vocab 2, uniform logits except position 1 which puts log-prob log(0.8) on token 1
    logits = torch.zeros(1, 4, 2)
    logits[0, 1] = torch.tensor([0.0, math.log(4.0)])  # softmax -> (0.2, 0.8)
    labels = torch.tensor([[-100, -100, 1, 0]])  # tokens 2 and 3 are the answer
    # token 2 is predicted at position 1: log 0.8; token 3 at position 2 (uniform): log 0.5
    assert sequence_logps(logits, labels).item() == pytest.approx(math.log(0.8) + math.log(0.5), abs=1e-6)
