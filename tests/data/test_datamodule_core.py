"""MedVQADataModule: seeded leak-free splits, lazy images, filters, the batch_size attribute."""

from __future__ import annotations

from functools import partial

import pytest

import medvqa.data.datamodule as dm_module
from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.formats import synthetic
from medvqa.data.split import shared_groups


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic.read(root, n_patients=30, images_per_patient=2, image_size=56)
    return root


def _dm(root, tiny, **kw):
    reader = partial(synthetic.read, n_patients=30, images_per_patient=2, image_size=56)
    return MedVQADataModule(reader, str(root), processor=tiny().processor, **({"batch_size": 4} | kw))


@pytest.mark.parametrize("split_by", ["official", "group"])
def test_no_patient_and_no_image_on_two_sides(synth_root, tiny, split_by):
    dm = _dm(synth_root, tiny, split_by=split_by, seed=3)
    dm.setup()
    assert all(dm.splits[k] for k in ("train", "val", "test"))
    assert shared_groups(dm.splits) == {}
    images = {k: {s.image for s in v} for k, v in dm.splits.items()}
    assert not (images["train"] & images["test"]) and not (images["train"] & images["val"])


def test_same_seed_same_split_other_seed_other_split(synth_root, tiny):
    ids = []
    for seed in (1, 1, 2):
        dm = _dm(synth_root, tiny, split_by="group", seed=seed)
        dm.setup()
        ids.append([s.id for s in dm.splits["test"]])
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_records_hold_no_pixels_and_items_open_one_image(synth_root, tiny, monkeypatch):
    opened = []
    real = dm_module.open_image
    monkeypatch.setattr(dm_module, "open_image", lambda s, *a: opened.append(s.image) or real(s, *a))
    dm = _dm(synth_root, tiny)
    dm.setup()
    assert opened == []  # setup reads records only
    item = dm.dataset("train")[5]
    assert opened == [dm.splits["train"][5].image] and item["image"].mode == "RGB"


def test_filters_and_limits_apply(synth_root, tiny):
    dm = _dm(synth_root, tiny, filters={"answer_type": ["closed"]}, limit={"test": 7})
    dm.setup()
    assert {s.answer_type for s in dm.splits["train"]} == {"closed"} and len(dm.splits["test"]) == 7


def test_batch_size_attribute_drives_the_train_loader(synth_root, tiny):
    dm = _dm(synth_root, tiny, batch_size=3, eval_batch_size=5)
    dm.setup()
    dm.batch_size = 2  # what BatchSizeFinder does
    assert len(next(iter(dm.train_dataloader()))["meta"]["id"]) == 2
    assert len(next(iter(dm.val_dataloader()))["meta"]["id"]) == 5


def test_blank_images_keep_size_but_drop_content(synth_root, tiny):
    dm = _dm(synth_root, tiny, blank_images=True)
    dm.setup()
    image = dm.dataset("train")[0]["image"]
    assert image.size == (56, 56) and image.getextrema() == ((128, 128),) * 3
