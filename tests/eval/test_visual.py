"""Visual reliance: the swap is a seeded derangement across patients, and the evaluation loaders really show
blank and swapped pictures."""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest

from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.formats import synthetic
from medvqa.eval.visual import derangement, visual_gain


@pytest.mark.parametrize("seed", range(20))
def test_derangement_never_pairs_a_question_with_its_own_patient(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 6) for _ in range(rng.randint(2, 12))]
    sizes = sizes if 2 * max(sizes) <= sum(sizes) else [*sizes, max(sizes) * 2]  # keep a solution possible
    groups = [f"p{g}" for g, n in enumerate(sizes) for _ in range(n)]
    rng.shuffle(groups)
    perm = derangement(groups, seed)
    assert sorted(perm) == list(range(len(groups)))  # a permutation: every image is shown once
    assert all(groups[perm[i]] != groups[i] for i in range(len(groups)))
    assert derangement(groups, seed) == perm  # seeded: the same swap every time


def test_derangement_depends_on_the_seed_and_refuses_an_impossible_swap():
    groups = [f"p{i // 2}" for i in range(40)]
    assert derangement(groups, 0) != derangement(groups, 1)
    assert derangement(["a", "b"], 0) == [1, 0]
    with pytest.raises(
        ValueError, match=r"eval.visual_reliance=true: one patient/image holds 3 of the split's 5"
    ):
        derangement(["a", "a", "a", "b", "c"])


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("synth")
    reader = partial(synthetic.read, n_patients=30, images_per_patient=2, image_size=56)
    dm = MedVQADataModule(reader, str(root), processor=tiny().processor, batch_size=4)
    dm.setup()
    return dm


def _pixels(dataset, i):
    return np.asarray(dataset[i]["image"])


def test_blank_and_swapped_loaders_change_the_pictures_and_keep_the_questions(datamodule):
    test = datamodule.splits["test"]
    real = datamodule.test_dataloader().dataset
    datamodule.image_mode = "blank"
    blank = datamodule.test_dataloader().dataset
    datamodule.image_mode = "swapped"
    swapped = datamodule.test_dataloader().dataset
    datamodule.image_mode = "real"
    by_image = {s.image: i for i, s in enumerate(test)}
    for i in range(len(test)):
        assert blank[i]["sample"] is swapped[i]["sample"] is test[i]  # the same question and answer
        assert np.all(_pixels(blank, i) == 128)
        shown = swapped.shown[i]
        assert shown.group != test[i].group and shown.image != test[i].image  # another patient's picture
        assert np.array_equal(_pixels(swapped, i), _pixels(real, by_image[shown.image]))
    assert not np.array_equal(_pixels(swapped, 0), _pixels(real, 0))
    # training never sees the evaluation modes
    datamodule.image_mode = "blank"
    try:
        assert not np.all(np.asarray(datamodule.dataset("train")[0]["image"]) == 128)
    finally:
        datamodule.image_mode = "real"


def _row(i, qtype, kind, closed_acc, prediction="yes", patient=None):
    scores = (
        {"closed_acc": closed_acc, "exact_match": closed_acc} if kind == "closed" else {"exact_match": 0.0}
    )
    return {"id": str(i), "question_type": qtype, "answer_type": kind, "scores": scores, "prediction": prediction,
            "image": f"img{i}.png", "patient_id": patient or f"p{i}"}  # fmt: skip


def test_visual_gain_is_real_minus_ablated_overall_and_per_question_type():
    real = [_row(0, "PLANE", "closed", 1.0), _row(1, "PLANE", "closed", 1.0), _row(2, "PRES", "closed", 0.0),
            _row(3, "PRES", "open", 0.0)]  # fmt: skip
    blank = [_row(0, "PLANE", "closed", 0.0), _row(1, "PLANE", "closed", 1.0), _row(2, "PRES", "closed", 0.0),
             _row(3, "PRES", "open", 0.0)]  # fmt: skip
    record = visual_gain(real, {"blank": blank}, n_boot=200, seed=0)
    assert record["scores"]["real"]["closed_acc"] == pytest.approx(2 / 3)
    assert record["gain"]["blank"]["closed_acc"] == pytest.approx(1 / 3)
    assert record["closed_acc_gain_ci"]["blank"]["mean"] == pytest.approx(1 / 3)  # paired: real minus blank
    plane = record["by_question_type"]["PLANE"]
    assert plane["n"] == 2 and plane["gain_blank"]["closed_acc"] == pytest.approx(0.5)
    assert record["by_question_type"]["PRES"]["gain_blank"]["closed_acc"] == 0.0


def test_reliance_is_real_minus_the_best_image_free_condition_and_sensitivity_counts_changed_answers():
    """4 closed questions on 2 patients. real: 1 1 1 0 (0.75); blank: 1 0 0 0 (0.25); none: 1 1 0 0 (0.5);
    swapped: 1 1 0 1. Reliance = 0.75 - max(0.25, 0.5) = 0.25 (question-only was the better guess).
    Answers: real y y y n; blank y n n n (q1, q2 change); swapped y y n y (q2, q3 change): sensitivity
    blank 2/4, swapped 2/4, either 3/4."""
    preds = {"real": "yyyn", "blank": "ynnn", "none": "yynn", "swapped": "yyny"}
    acc = {"real": [1, 1, 1, 0], "blank": [1, 0, 0, 0], "none": [1, 1, 0, 0], "swapped": [1, 1, 0, 1]}
    rows = {m: [_row(i, "PRES", "closed", float(acc[m][i]), preds[m][i], f"p{i // 2}") for i in range(4)]
            for m in preds}  # fmt: skip
    record = visual_gain(rows["real"], {m: rows[m] for m in ("blank", "swapped", "none")}, n_boot=300, seed=0)
    assert record["reliance"]["closed_acc"] == pytest.approx(0.25)
    ci = record["reliance_ci"]
    assert ci["mean"] == pytest.approx(0.25) and ci["best_image_free"] == "none"
    assert (ci["unit"], ci["n_clusters"], ci["n"]) == ("patient", 2, 4) and ci["low"] <= 0.25 <= ci["high"]
    sens = record["sensitivity"]
    assert [sens[m]["mean"] for m in ("blank", "swapped", "any")] == pytest.approx([0.5, 0.5, 0.75])
    assert sens["any"]["unit"] == "patient" and sens["any"]["n_clusters"] == 2
    assert record["closed_acc_gain_ci"]["none"]["mean"] == pytest.approx(0.25)
    assert (
        record["images"]["none"].startswith("no image")
        and record["images"]["real"] == "the question's own image"
    )
    qtype = record["by_question_type"]["PRES"]
    assert (
        qtype["reliance"]["closed_acc"] == pytest.approx(0.25) and qtype["sensitivity"]["any"]["mean"] == 0.75
    )


def test_clustered_reliance_interval_is_wider_than_per_question():
    """20 patients x 5 questions, real right on even patients, blank and none wrong everywhere: the
    reliance interval over 20 patients is wider than over 100 independent questions."""
    real = [_row(i, "PRES", "closed", float((i // 5) % 2 == 0), patient=f"p{i // 5}") for i in range(100)]
    wrong = [_row(i, "PRES", "closed", 0.0, patient=f"p{i // 5}") for i in range(100)]
    by_patient = visual_gain(real, {"blank": wrong, "none": wrong}, 500, 0)["reliance_ci"]
    by_question = visual_gain(real, {"blank": wrong, "none": wrong}, 500, 0, unit="question")["reliance_ci"]
    assert by_patient["n_clusters"] == 20 and by_question["n_clusters"] == 100
    assert by_patient["high"] - by_patient["low"] > 1.8 * (by_question["high"] - by_question["low"])


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_the_none_condition_prompts_the_question_without_any_image(family, tiny, tmp_path):
    """image_mode=none: the same questions, no image part in the chat, no image tokens, no pixels; the
    model still answers (generate runs on the text-only batch)."""
    vlm = tiny(family)
    reader = partial(synthetic.read, n_patients=30, images_per_patient=2, image_size=56)
    dm = MedVQADataModule(reader, str(tmp_path), processor=vlm.processor, batch_size=4)
    dm.setup()
    real = next(iter(dm.test_dataloader()))
    dm.image_mode = "none"
    try:
        none = next(iter(dm.test_dataloader()))
    finally:
        dm.image_mode = "real"
    assert none["meta"]["id"] == real["meta"]["id"]
    assert "pixel_values" in real and "pixel_values" not in none
    image_ids = [i for i in (getattr(vlm.processor, "image_token_id", None),) if i is not None]
    assert image_ids and all((real["prompt_input_ids"] == t).any() for t in image_ids)
    assert not any((none["prompt_input_ids"] == t).any() for t in image_ids)
    text = vlm.processor.tokenizer.decode(none["prompt_input_ids"][0], skip_special_tokens=True)
    assert none["meta"]["question"][0] in text
    assert (none["labels"] != -100).any()  # the answer is still supervised (scored by the loss)
    inputs = {k.removeprefix("prompt_"): v for k, v in none.items() if k.startswith("prompt_")}
    assert vlm.model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[0] == 4
