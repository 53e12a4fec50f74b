"""The Predictor library (what `medvqa.predict` and the app use): confidence and mean log-probability equal
a hand computation from the model's logits; images given as bytes or PIL answer as their file does; the
polar-question rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from medvqa.data.images import open_image
from medvqa.data.sample import VQASample
from medvqa.inference.polar import answer_options, either_or_spelled, option_of, option_texts, polar_options


def sequence_logps(model, enc, tokens: list[int]) -> torch.Tensor:
    """log p(token_i | prompt, tokens_<i) for each of `tokens` appended to the encoded prompt, by hand:
    one forward pass over the concatenation and a log-softmax at each position."""
    n = enc["input_ids"].shape[1]
    extra = torch.tensor([tokens])
    inputs = dict(enc) | {
        "input_ids": torch.cat([enc["input_ids"], extra], 1),
        "attention_mask": torch.ones(1, n + len(tokens), dtype=torch.long),
    }
    if "mm_token_type_ids" in enc:
        inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra)], 1)
    with torch.no_grad():
        logits = model(**inputs).logits[0, n - 1 : -1].double()
    return torch.log_softmax(logits, -1).gather(1, extra[0][:, None])[:, 0]


def encoded_prompt(predictor, image_path: str, question: str):
    sample = VQASample(id="x", image=image_path, question=question, answer="")
    image = open_image(sample, predictor.max_side)
    processor = predictor.collator.processor
    prompt = predictor.collator.prompt_text(sample)
    return processor(text=[prompt], images=[image], return_tensors="pt")


def hand_option_logprobs(predictor, image: str, question: str, texts: dict[str, str]) -> dict[str, float]:
    enc = encoded_prompt(predictor, image, question)
    tokenizer, model = predictor.collator.tokenizer, predictor.stage.model
    return {o: float(sequence_logps(model, enc, tokenizer(t, add_special_tokens=False)["input_ids"]
                                    + [tokenizer.eos_token_id]).sum()) for o, t in texts.items()}  # fmt: skip


def test_confidence_is_the_softmax_of_the_options_sequence_logprobs_by_hand(predictor, run_rows):
    row = next(r for r in run_rows if r["answer_type"] == "closed")
    got = predictor.answer(row["image"], row["question"])
    scores = hand_option_logprobs(
        predictor, row["image"], row["question"], option_texts(row["question"], got.answer)
    )
    z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
    by_hand = {o: float(torch.exp(torch.tensor(s, dtype=torch.float64) - z)) for o, s in scores.items()}
    assert got.kind == "closed" and not got.calibrated  # the tiny run has no calibration.json
    assert got.option_logprobs == pytest.approx(scores, abs=1e-4)
    assert got.options == pytest.approx(by_hand, abs=1e-5)
    assert sum(got.options.values()) == pytest.approx(1.0, abs=1e-6)
    # the confidence is the named option's probability; an answer naming neither option has none
    named = option_of(got.answer, list(got.options))
    assert got.confidence == (got.options[named] if named else None)


def test_a_sentence_answer_and_its_competitor_are_both_scored_as_neutral_answers(predictor, run_rows):
    """ "There is no fracture." is scored as "No." against "Yes.", never against the self-contradiction
    "There is yes fracture." (or "Yes, there is no fracture.")."""
    from medvqa.inference.scoring import option_logprobs
    from medvqa.stages.base import prompt_inputs

    rows = [r for r in run_rows if r["answer_type"] == "closed"][:2]
    ready = [{"sample": VQASample(id=r["id"], image=r["image"], question=r["question"], answer=""),
              "image": open_image(VQASample(id="", image=r["image"], question="", answer=""), predictor.max_side)}
             for r in rows]  # fmt: skip
    batch = predictor.collator(ready)  # two prompts in one left-padded batch
    said = ["There is no fracture.", "yes"]
    got = option_logprobs(predictor.stage.model, prompt_inputs(batch), [r["question"] for r in rows], said,
                          said, predictor.collator.tokenizer)  # fmt: skip
    assert option_texts(rows[0]["question"], said[0]) == {"yes": "Yes.", "no": "No."}
    for row, answer, scores in zip(rows, said, got, strict=True):
        texts = option_texts(row["question"], answer)
        assert scores == pytest.approx(
            hand_option_logprobs(predictor, row["image"], row["question"], texts), abs=1e-4
        )


def test_the_test_loop_rows_carry_the_scores_the_predictor_gives(predictor, run_rows):
    """One pass: predictions.jsonl's option_logprobs / mean_logprob are those of the generation it scored,
    the same numbers the Predictor (app, predict, guard) computes for that question."""
    closed = next(r for r in run_rows if r["answer_type"] == "closed" and "option_logprobs" in r)
    opened = next(r for r in run_rows if r["answer_type"] == "open")
    for row in (closed, opened):
        got = predictor.answer(row["image"], row["question"])
        assert got.answer == row["prediction"]
        assert got.mean_logprob == pytest.approx(row["mean_logprob"], abs=1e-4)
    assert predictor.answer(closed["image"], closed["question"]).option_logprobs == pytest.approx(
        closed["option_logprobs"], abs=1e-4
    )


def test_a_structured_completion_scores_the_neutral_answer_inside_its_tag():
    from medvqa.inference.scoring import scored_text

    completion = "<think>the cortex is intact</think><answer>There is no fracture.</answer>"
    assert scored_text(completion, "Yes.") == "<think>the cortex is intact</think><answer>Yes.</answer>"
    assert scored_text("There is no fracture.", "Yes.") == "Yes."


def test_a_calibrated_predictor_scales_the_option_logprobs_by_its_temperature(predictor, run_rows):
    import math

    row = next(r for r in run_rows if r["answer_type"] == "closed")
    raw = predictor.answer(row["image"], row["question"])
    predictor.temperature = 2.0
    try:
        hot = predictor.answer(row["image"], row["question"])
    finally:
        predictor.temperature = None
    s = list(raw.option_logprobs.values())
    expected = 1 / (1 + math.exp((s[1] - s[0]) / 2.0))
    assert hot.calibrated and hot.option_logprobs == pytest.approx(raw.option_logprobs)
    assert list(hot.options.values())[0] == pytest.approx(expected, abs=1e-9)


def test_mean_logprob_is_the_mean_over_the_generated_tokens_and_the_end_token(predictor, run_rows):
    row = next(r for r in run_rows if r["answer_type"] == "open")
    got = predictor.answer(row["image"], row["question"])
    enc = encoded_prompt(predictor, row["image"], row["question"])
    model, eos = predictor.stage.model, predictor.collator.tokenizer.eos_token_id
    config = predictor.stage.eval_generation_config()
    with torch.no_grad():
        new = model.generate(**enc, generation_config=config)[0, enc["input_ids"].shape[1] :].tolist()
    tokens = new[: new.index(eos) + 1] if eos in new else new  # up to and including the end token
    by_hand = float(sequence_logps(model, enc, tokens).mean())
    assert got.kind == "open" and got.confidence is None and got.options is None
    assert got.mean_logprob == pytest.approx(by_hand, abs=1e-4)
    assert got.mean_logprob <= 0.0


def test_bytes_and_pil_images_answer_exactly_as_their_file(predictor, run_rows):
    closed = [r for r in run_rows if r["answer_type"] == "closed"]
    rows = closed[:2] + [r for r in run_rows if r["answer_type"] == "open"][:1]
    for row in rows:
        from_file = predictor.answer(row["image"], row["question"])
        data = Path(row["image"]).read_bytes()
        from_bytes = predictor.answer(data, row["question"])
        from_pil = predictor.answer(Image.open(io.BytesIO(data)), row["question"])
        assert from_file.answer == from_bytes.answer == from_pil.answer == row["prediction"]
        if from_file.kind == "closed":
            assert from_bytes.confidence == pytest.approx(from_file.confidence, abs=1e-6)
        assert from_pil.mean_logprob == pytest.approx(from_file.mean_logprob, abs=1e-6)


@pytest.mark.parametrize(
    ("question", "options"),
    [
        ("Is there a fracture?", ["yes", "no"]),
        ("Does this image show the liver?", ["yes", "no"]),
        ("Is the lesion on the left or right?", ["left", "right"]),
        ("Is this a CT or an MRI?", ["ct", "mri"]),
        ("Which side, left or right?", ["left", "right"]),
        ("Is there a lesion or not?", ["yes", "no"]),
        ("Is the lesion on the left side or on the right side?", ["left", "right"]),
        ("Is the mass in the left lung or right lung?", ["left", "right"]),
        ("Is the lesion in the left kidney or the right kidney?", ["left", "right"]),
        ("Is this in the axial or coronal plane?", ["axial", "coronal"]),
        ("Is this a chest x-ray or an abdominal CT?", ["chest x-ray", "abdominal ct"]),
        ("Is this an MRI or X-Ray?", ["mri", "x-ray"]),
        ("What organ is shown?", None),
        ("In which plane was this image taken?", None),
    ],
)
def test_polar_questions_and_their_options(question, options):
    assert polar_options(question) == options


def test_the_option_an_answer_names():
    assert option_of("Yes.", ["yes", "no"]) == "yes"
    assert option_of("no, there is none", ["yes", "no"]) == "no"
    assert option_of("liver", ["yes", "no"]) is None
    # an "A or B" question answered yes / no is scored among yes / no
    assert answer_options("Is there effusion or edema?", "yes") == ["yes", "no"]
    assert answer_options("Is there effusion or edema?", "edema") == ["effusion", "edema"]


@pytest.mark.parametrize(
    ("question", "answer", "texts"),
    [
        # every option is scored as a bare answer spelled as the question spells it, never "Ct" / "Mri"
        ("Is this a CT or MRI?", "CT", {"ct": "CT", "mri": "MRI"}),
        ("Is this an MRI or X-Ray?", "MRI", {"mri": "MRI", "x-ray": "X-Ray"}),
        ("Is this an MRI or X-Ray?", "X-ray", {"mri": "MRI", "x-ray": "X-Ray"}),
        ("Is this a CT or MRI?", "ct", {"ct": "ct", "mri": "mri"}),  # a lower-case answer: lower-case options
        ("Is the lesion on the left side or on the right side?", "left", {"left": "left", "right": "right"}),
        ("Is the lesion on the left or right?", "Left", {"left": "Left", "right": "Right"}),
        # the model's words around the option are not kept: "Left lung" is scored as "Left" against "Right"
        ("Is the mass in the left lung or right lung?", "Right lung", {"left": "Left", "right": "Right"}),
        ("Is this a chest x-ray or an abdominal CT?", "abdominal CT", {"chest x-ray": "chest x-ray", "abdominal ct": "abdominal CT"}),
        ("Is there a fracture?", "Yes", {"yes": "Yes", "no": "No"}),
        # a sentence: "No." against "Yes.", not the sentence with its "no" swapped for a contradiction
        ("Is there a fracture?", "There is no fracture.", {"yes": "Yes.", "no": "No."}),
        ("Is there effusion or edema?", "no", {"yes": "yes", "no": "no"}),
        ("What organ is shown?", "liver", None),
    ],
)  # fmt: skip
def test_options_are_scored_on_neutral_answers_spelled_as_the_question_spells_them(question, answer, texts):
    assert option_texts(question, answer) == texts


def test_the_side_question_names_left_so_its_confidence_is_not_zero():
    from medvqa.inference.scoring import confidence

    question = "Is the lesion on the left side or on the right side?"
    assert either_or_spelled(question) == ["left", "right"]
    assert confidence("left", {"left": 0.7, "right": 0.3}) == 0.7
    # an answer naming no option has no confidence (None, not 0.0): the guard abstains on it
    assert confidence("PET", {"ct": 0.6, "mri": 0.4}) is None


@pytest.mark.parametrize("format_weight", [0.5, 0.0])
def test_a_grpo_run_is_asked_and_parsed_as_its_evaluation_did(tiny, format_weight):
    from medvqa.inference import Predictor
    from medvqa.rewards.tags import INSTRUCTION
    from medvqa.stages.grpo import GRPOModule

    vlm = tiny("qwen2_vl")
    stage = {"_target_": "medvqa.stages.grpo.GRPOModule", "max_new_tokens": 4,
             "reward_weights": {"format": format_weight, "answer_match": 1.0}}  # fmt: skip
    predictor = Predictor.build(vlm.model, vlm.processor, {}, stage)
    asked = INSTRUCTION if format_weight else None
    assert predictor.collator.instruction == asked == GRPOModule.prompt_instruction(stage)
    assert predictor.parse("<think>a</think><answer>no</answer>") == "no"
    assert predictor.stage.max_new_tokens == 4
