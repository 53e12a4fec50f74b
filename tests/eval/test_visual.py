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


def _row(i, qtype, kind, closed_acc):
    scores = (
        {"closed_acc": closed_acc, "exact_match": closed_acc} if kind == "closed" else {"exact_match": 0.0}
    )
    return {"id": str(i), "question_type": qtype, "answer_type": kind, "scores": scores}


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
