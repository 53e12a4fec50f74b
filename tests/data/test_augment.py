"""Augmentation: laterality-aware (no mirror for left/right questions), train split only, seeded."""

import albumentations as A
import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from medvqa.data.augment import Augment, mentions_side
from medvqa.data.sample import VQASample
from tests.conftest import compose_cfg


def _sample(question: str, answer: str = "yes") -> VQASample:
    return VQASample(id="1", image="x", question=question, answer=answer)


def _asymmetric() -> Image.Image:
    img = np.zeros((32, 48, 3), dtype=np.uint8)
    img[8:24, 2:12] = 255  # a bright block on the image's left only
    return Image.fromarray(img)


@pytest.mark.parametrize(
    ("question", "answer", "lateral"),
    [
        ("Is the mass on the left side?", "yes", True),
        ("Which side is the lesion on?", "Right", True),
        ("Is there a left-sided effusion?", "no", True),
        ("Is there dextrocardia?", "no", True),
        ("Is the patient upright?", "yes", False),  # 'right' inside a word is no side
        ("Is the lesion bright on T2?", "yes", False),
        ("What modality is this?", "CT", False),
    ],
)
def test_mentions_side(question, answer, lateral):
    assert mentions_side(_sample(question, answer)) is lateral


def test_no_flip_when_question_or_answer_mentions_a_side():
    augment = Augment([A.HorizontalFlip(p=1.0)], seed=0)
    original = np.asarray(_asymmetric())
    for question, answer in [("Is the mass on the left side?", "yes"), ("Where is the liver?", "right lobe")]:
        assert np.array_equal(np.asarray(augment(_asymmetric(), _sample(question, answer))), original)
    flipped = np.asarray(augment(_asymmetric(), _sample("Is there a mass?")))
    assert np.array_equal(flipped, original[:, ::-1])
    # switched off, the flip applies to lateral questions too
    blind = Augment([A.HorizontalFlip(p=1.0)], laterality_aware=False)
    assert np.array_equal(np.asarray(blind(_asymmetric(), _sample("Left or right?"))), original[:, ::-1])


def test_side_swapping_transforms_are_dropped_others_kept():
    kept = [A.Rotate(limit=10, p=1.0), A.RandomBrightnessContrast(p=1.0)]
    swapping = [A.HorizontalFlip(p=1.0), A.Transpose(p=1.0), A.RandomRotate90(p=1.0), A.Rotate(limit=180, p=1.0),
                A.Affine(rotate=(-120, 120), p=1.0)]  # fmt: skip
    augment = Augment([*kept, *swapping])
    safe = augment.pipeline(_sample("Is the left lung clear?")).transforms
    assert [type(t) for t in safe] == [A.Rotate, A.RandomBrightnessContrast]
    assert len(augment.pipeline(_sample("Is the lung clear?")).transforms) == 7


def test_medical_pipeline_from_config_has_the_listed_transforms_and_is_seeded():
    cfg = compose_cfg(["augment=medical"])
    a, b = instantiate(cfg.augment), instantiate(cfg.augment)
    names = {type(t).__name__ for t in a.transforms}
    assert {"CLAHE", "ElasticTransform", "GaussNoise", "Rotate", "RandomBrightnessContrast", "CoarseDropout",
            "GaussianBlur", "HorizontalFlip"} == names  # fmt: skip
    rotate = next(t for t in a.transforms if isinstance(t, A.Rotate))
    assert tuple(rotate.limit) == (-10, 10)
    image, sample = (
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        _sample("q"),
    )
    out_a = [np.asarray(a(image, sample)) for _ in range(3)]
    out_b = [np.asarray(b(image, sample)) for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(out_a, out_b, strict=True))  # same seed, same draws
    assert out_a[0].shape == (64, 64, 3) and out_a[0].dtype == np.uint8
    assert not all(np.array_equal(out_a[0], x) for x in out_a[1:])  # but draws differ call to call
    assert instantiate(compose_cfg([]).augment).transforms == []  # the default is none


def test_datamodule_augments_the_train_split_only(release):
    from medvqa.data.datamodule import MedVQADataModule
    from medvqa.data.formats import slake

    dm = MedVQADataModule(slake.read, str(release("slake")), augment=Augment([A.HorizontalFlip(p=1.0)]))
    dm.setup()
    assert dm.dataset("train").transform is dm.augment
    assert dm.dataset("val").transform is None and dm.dataset("test").transform is None
    train = dm.dataset("train")
    i = next(k for k, s in enumerate(train.samples) if s.question.startswith("What modality"))
    plain = np.asarray(Image.open(train.samples[i].image).convert("RGB"))
    assert np.array_equal(np.asarray(train[i]["image"]), plain[:, ::-1])
    j = next(k for k, s in enumerate(train.samples) if s.answer == "Left")  # "Where is the liver?" -> Left
    assert np.array_equal(
        np.asarray(train[j]["image"]), np.asarray(Image.open(train.samples[j].image).convert("RGB"))
    )
