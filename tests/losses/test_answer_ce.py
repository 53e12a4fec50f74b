"""Answer-token cross-entropy as (sum, count), and closed-answer class weights, against hand-worked numbers."""

import math

import pytest
import torch

from medvqa.losses.answer_ce import (
    IGNORE_INDEX,
    answer_positions,
    answer_token_ce,
    closed_answer_weights,
    sample_weights,
)


def test_sum_and_count_by_hand():
    # two classes, logits (0, ln 3): p(class 1) = 3/4, p(class 0) = 1/4
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)]], [[0.0, math.log(3)], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0], [1, IGNORE_INDEX]])
    total, count = answer_token_ce(logits, targets)
    assert float(count) == 3
    assert float(total) == pytest.approx(-math.log(0.75) - math.log(0.25) - math.log(0.75), rel=1e-6)
    # sample weights 2 and 0.5: 2 * (-ln .75 - ln .25) + 0.5 * (-ln .75), count 2 * 2 + 0.5 * 1
    total, count = answer_token_ce(logits, targets, torch.tensor([2.0, 0.5]))
    assert float(count) == 4.5
    assert float(total) == pytest.approx(
        2 * (-math.log(0.75) - math.log(0.25)) - 0.5 * math.log(0.75), rel=1e-6
    )


def test_answer_positions_are_the_logits_that_predict_answer_tokens():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, -100, -100, 7, -100]])
    assert answer_positions(labels).tolist() == [1, 2]  # position p predicts labels[:, p + 1]


def test_balanced_weights_by_hand():
    answers = [
        ("Yes", "closed"),
        ("yes", "closed"),
        ("yes.", "closed"),
        ("No", "closed"),
        ("left lung", "open"),
    ]
    weights = closed_answer_weights(answers)
    assert weights == pytest.approx({"yes": 4 / (2 * 3), "no": 4 / (2 * 1)})  # N / (C * n_c)
    assert sample_weights(
        weights, ["YES", "no", "left lung", "maybe"], ["closed", "closed", "open", "closed"]
    ).tolist() == [pytest.approx(2 / 3), 2.0, 1.0, 1.0]


def test_sft_loss_equals_the_models_own_and_class_weights_reweight_samples():
    from train_helpers import items, sft_module, tiny_lora

    from medvqa.data.collate import VQACollator

    model, processor = tiny_lora()
    batch = VQACollator(processor)(items(4))  # answers yes, no, (open), 12
    module = sft_module(model, processor)
    total, count = module.answer_loss(batch)
    assert float(total / count) == pytest.approx(
        float(
            model(
                **{
                    k: v
                    for k, v in batch.items()
                    if k not in ("meta", "n_skipped") and not k.startswith("prompt_")
                }
            ).loss
        ),
        rel=1e-5,
    )
    per_sample = [module.answer_loss(VQACollator(processor)([it])) for it in items(4)]
    module.answer_weights = {"yes": 3.0, "no": 0.5}
    weighted, wcount = module.answer_loss(batch)
    w = [3.0, 0.5, 1.0, 1.0]
    assert float(weighted) == pytest.approx(
        sum(wi * float(t) for wi, (t, _) in zip(w, per_sample, strict=True)), rel=1e-4
    )
    assert float(wcount) == pytest.approx(
        sum(wi * float(c) for wi, (_, c) in zip(w, per_sample, strict=True))
    )
