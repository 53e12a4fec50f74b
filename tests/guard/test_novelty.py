"""Image novelty: an image unlike the run's training images is referred with "does not look like the images
this model was trained on" and never answered; held-out images like the training ones mostly pass."""

from __future__ import annotations

import json

import numpy as np
import pydicom.data
import pytest
from PIL import Image

from medvqa.data.images import load_image
from medvqa.guard import Guard
from medvqa.guard.novelty import NOVEL_IMAGE, NOVEL_TEXT, NoveltyGuard, NoveltyVerdict, image_features
from medvqa.guard.patterns import REFERRALS
from tests.guard.fakes import FakeAnswer

CT_SMALL = pydicom.data.get_testdata_file("CT_small.dcm")


@pytest.fixture(scope="module")
def synthetic_images(tmp_path_factory) -> dict[str, list[Image.Image]]:
    """Distinct generated images, cut by patient into train / val / held-out (80 / 30 / 40 images)."""
    from medvqa.data.formats.synthetic import read

    root = tmp_path_factory.mktemp("novelty_data")
    samples = read(root, n_patients=75, images_per_patient=2, image_size=56)
    by_patient: dict[str, str] = {}
    for s in samples:
        by_patient.setdefault(s.image, s.patient_id)
    patients = sorted(set(by_patient.values()))
    cut = {p: "train" if n < 40 else "val" if n < 55 else "held_out" for n, p in enumerate(patients)}
    out: dict[str, list[Image.Image]] = {"train": [], "val": [], "held_out": []}
    for image, patient in sorted(by_patient.items()):
        out[cut[patient]].append(load_image(root / image))
    return out


@pytest.fixture(scope="module")
def novelty(synthetic_images) -> NoveltyGuard:
    return NoveltyGuard.fit(synthetic_images["train"], synthetic_images["val"], quantile=0.99)


def test_features_do_not_depend_on_resolution(synthetic_images):
    image = synthetic_images["train"][0]
    small, big = image_features(image), image_features(image.resize((224, 224), Image.NEAREST))
    assert small.shape == (84,) and np.abs(small - big).max() < 0.05


def test_a_real_ct_is_unlike_synthetic_training_images(novelty):
    verdict = novelty.check_source(CT_SMALL)
    assert verdict.novel and verdict.distance > 2 * verdict.threshold, verdict
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert novelty.check(photo).novel


def test_held_out_images_like_the_training_ones_mostly_pass(novelty, synthetic_images):
    held_out = [novelty.check(im) for im in synthetic_images["held_out"]]
    flagged = sum(v.novel for v in held_out) / len(held_out)
    assert len(held_out) >= 30 and flagged <= 0.1, flagged
    assert not any(novelty.check(im).novel for im in synthetic_images["train"])


def test_the_quantile_sets_the_validation_share_flagged(synthetic_images):
    loose = NoveltyGuard.fit(synthetic_images["train"], synthetic_images["val"], quantile=0.5)
    flagged = np.mean([loose.check(im).novel for im in synthetic_images["val"]])
    assert 0.4 <= flagged <= 0.6
    with pytest.raises(ValueError, match="guard.novelty_quantile="):
        NoveltyGuard.fit(synthetic_images["train"], synthetic_images["val"], quantile=0.0)


class Model:
    def __init__(self):
        self.asked = []

    def __call__(self, question):
        self.asked.append(question)
        return FakeAnswer("x-ray", "open", mean_logprob=-0.01)


def test_a_novel_image_is_referred_before_the_model(scope):
    novel = NoveltyVerdict(True, 9.0, 2.0)
    model, guard = Model(), Guard("patient", scope, {"closed": 0.0, "open": -1000.0})
    decision = guard.decide("What imaging modality was used?", model, novel)
    assert (decision.guard, decision.rule, decision.shown_text, model.asked) == ("referred", NOVEL_IMAGE,
                                                                                NOVEL_TEXT, [])  # fmt: skip
    assert "does not look like the images this model was trained on" in decision.shown_text
    # a crisis outranks the image: the crisis text, not the novelty one
    assert guard.decide("I want to kill myself", model, novel).shown_text == REFERRALS["self_harm"]
    # research mode asks the model and shows its raw answer beside the rule patient mode takes
    research = Guard("research", scope, {"closed": 0.0, "open": -1000.0}).decide(
        "Which organ is shown?", model, novel
    )
    assert (
        research.rule == NOVEL_IMAGE
        and research.shown_text == "x-ray"
        and model.asked == ["Which organ is shown?"]
    )
    familiar = guard.decide("Which organ is shown?", model, NoveltyVerdict(False, 1.0, 2.0))
    assert familiar.guard == "answered"


def test_predict_guard_patient_flags_a_real_ct_on_the_tiny_run(tiny_run_dir, tmp_path):
    """`python -m medvqa.predict run=<tiny run> guard=patient`: pydicom's CT_small.dcm is referred as unlike
    the training images (never sent to the model); one of the run's own training images is not."""
    from medvqa.guard.calibration import run_questions
    from medvqa.predict import answer, check_modes
    from tests.inference.conftest import predict_cfg, write_jsonl

    datamodule, _ = run_questions(tiny_run_dir)
    own, asked = datamodule.splits["train"][0].image, datamodule.splits["train"][0].question  # in scope
    inputs = write_jsonl(tmp_path / "q.jsonl", [{"image": CT_SMALL, "question": asked, "id": "ct"},
                                               {"image": own, "question": asked, "id": "own"}])  # fmt: skip
    overrides = [f"run={tiny_run_dir}", f"inputs={inputs}", "guard=patient", "guard.thresholds={closed:0.0,open:-1000.0}",
                 "inputs_root=/"]  # fmt: skip
    cfg = predict_cfg(*overrides)
    check_modes(cfg, overrides)
    rows = {r["id"]: r for r in answer(cfg, tmp_path)}
    assert rows["ct"]["guard"] == "referred" and rows["ct"]["guard_rule"] == NOVEL_IMAGE
    assert rows["ct"]["answer"] is None and rows["ct"]["shown_text"] == NOVEL_TEXT
    assert rows["own"]["guard_rule"] != NOVEL_IMAGE and rows["own"]["answer"] is not None
    assert (
        json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])["guard_rule"] == NOVEL_IMAGE
    )
