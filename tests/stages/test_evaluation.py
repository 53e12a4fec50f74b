"""Evaluation by generation inside the stages' test loop: what is scored, and how answers are generated."""

from __future__ import annotations

import pytest
from transformers import GenerationConfig

from tests.train_helpers import loader, sft_module, tiny_lora, trainer

GARBAGE = " ".join(["ct left no yes lung the right mass axial liver normal absent present"] * 4)


def test_a_long_garbage_completion_does_not_score_in_the_test_loop(monkeypatch):
    model, processor = tiny_lora()
    module = sft_module(model, processor)

    def garbage(stage, batch, parse):  # the test loop's one scored generation (medvqa/inference/scoring.py)
        n = len(batch["meta"]["id"])
        return {"completions": [GARBAGE] * n, "answers": [parse(GARBAGE)] * n, "mean_logprobs": [0.0] * n,
                "option_logprobs": [None] * n}  # fmt: skip

    monkeypatch.setattr("medvqa.inference.scoring.scored_generation", garbage)
    out = trainer().test(module, dataloaders=loader(processor, 4, n=8), verbose=False)[0]
    closed = [r for r in module.predictions if r["answer_type"] == "closed"]
    assert closed and all(r["scores"]["closed_acc"] == 0.0 for r in closed)
    assert out["test/closed_acc"] == 0.0 and out["test/closed_exact"] == 0.0 and out["test/hedged"] == 1.0


def test_evaluation_is_greedy_whatever_the_checkpoint_generation_config_says():
    model, processor = tiny_lora()
    module = sft_module(model, processor, max_new_tokens=8)
    batch = next(iter(loader(processor, 8, n=8)))
    greedy = module.generate_answers(batch)
    # a checkpoint shipping sampling and penalties (as hub models do) must not change evaluation
    inner = model.get_base_model()
    inner.generation_config = GenerationConfig(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=5.0,
                                               no_repeat_ngram_size=1, eos_token_id=inner.generation_config.eos_token_id)  # fmt: skip
    assert module.generate_answers(batch) == greedy
    assert inner.generation_config.repetition_penalty == 5.0  # the model's own config is left as it was
    assert module.eval_generation_config().to_dict()["repetition_penalty"] == 1.0


def test_eval_generation_overrides_are_applied_and_a_bad_key_fails_at_construction():
    model, processor = tiny_lora()
    module = sft_module(model, processor, eval_generation={"num_beams": 2})
    assert module.eval_generation_config().num_beams == 2 and not module.eval_generation_config().do_sample
    with pytest.raises(ValueError, match="stage.eval_generation"):
        sft_module(model, processor, eval_generation={"num_beam": 2})


def test_prediction_rows_carry_the_fields_breakdowns_and_galleries_read():
    """Each test row names its picture and categories (empty ones left out), so evaluation breakdowns and
    report galleries need nothing but predictions.jsonl."""
    from dataclasses import replace

    from torch.utils.data import DataLoader

    from medvqa.data.collate import VQACollator
    from tests.train_helpers import items

    model, processor = tiny_lora()
    module = sft_module(model, processor)
    rows = items(4)
    for i, item in enumerate(rows):
        item["sample"] = replace(item["sample"], image=f"/data/img{i}.png", organ="chest" if i % 2 else "",
                                 question_type="PRES", source="vqa_rad")  # fmt: skip
    trainer().test(
        module, dataloaders=DataLoader(rows, batch_size=4, collate_fn=VQACollator(processor)), verbose=False
    )
    got = module.predictions
    assert [r["image"] for r in got] == [f"/data/img{i}.png" for i in range(4)]
    assert [r.get("organ") for r in got] == [None, "chest", None, "chest"]
    assert all(r["question_type"] == "PRES" and r["source"] == "vqa_rad" for r in got)
    assert all("image_row" not in r and "image_member" not in r for r in got)
