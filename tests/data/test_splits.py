"""Every dataset's split builder: no picture and no patient id on two sides (checked on the image bytes
themselves, not on the reader's own group keys), and overlaps a release ships with are reported."""

import hashlib
import logging
from itertools import combinations
from pathlib import Path

import pytest

from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.formats import (
    jsonl,
    kvasir_vqa,
    kvasir_vqa_x1,
    medpix,
    mix,
    path_vqa,
    pmc_vqa,
    slake,
    vqa_rad,
)
from medvqa.data.images import parquet_image_bytes, zip_member_bytes
from medvqa.data.split import make_splits

MIX = {
    "vqa_rad": {"reader": vqa_rad.read},
    "slake": {"reader": slake.read},
    "medpix": {"reader": medpix.read},
}
# (fixture, options, reader, split_by values under which the built splits must not leak)
CASES = [
    ("vqa_rad", {}, vqa_rad.read, ["group"]),
    ("vqa_rad", {"reduced": True}, vqa_rad.read, ["group"]),
    ("vqa_rad_parquet", {}, vqa_rad.read, ["group"]),
    ("slake", {}, slake.read, ["official", "group"]),
    ("kvasir_vqa", {}, kvasir_vqa.read, ["official", "group"]),
    ("kvasir_vqa_x1", {}, kvasir_vqa_x1.read, ["official", "group"]),
    ("medpix", {}, medpix.read, ["official", "group"]),
    ("medpix", {"official_split": False}, medpix.read, ["official"]),
    ("path_vqa", {}, path_vqa.read, ["official", "group"]),
    ("pmc_vqa", {}, pmc_vqa.read, ["group"]),
    ("jsonl", {}, jsonl.read, ["official", "group"]),
    ("mix", {}, lambda root, bad: mix.read(root, bad, MIX), ["group"]),  # official: VQA-RAD as shipped
]


def _picture(sample) -> str:
    """A digest of the image's bytes, wherever they live."""
    if sample.image_row is not None:
        data = parquet_image_bytes(sample.image, sample.image_row)
    elif sample.image_member:
        data = zip_member_bytes(sample.image, sample.image_member)
    else:
        data = Path(sample.image).read_bytes()
    return hashlib.sha1(data).hexdigest()


def _leaks(splits) -> dict:
    sides = {name: ({_picture(s) for s in rows}, {s.patient_id for s in rows if s.patient_id})
             for name, rows in splits.items()}  # fmt: skip
    return {
        (a, b): (sides[a][0] & sides[b][0], sides[a][1] & sides[b][1])
        for a, b in combinations(sides, 2)
        if sides[a][0] & sides[b][0] or sides[a][1] & sides[b][1]
    }


@pytest.mark.parametrize(
    ("name", "options", "reader", "split_by"),
    [(n, o, r, by) for n, o, r, modes in CASES for by in modes],
    ids=[
        f"{n}{'-' + '-'.join(map(str, o.values())) if o else ''}-{by}"
        for n, o, _, modes in CASES
        for by in modes
    ],
)
def test_no_picture_or_patient_on_two_sides(release, name, options, reader, split_by):
    dm = MedVQADataModule(reader, str(release(name, **options)), split_by=split_by, seed=1)
    dm.setup()
    assert all(dm.splits.values()), {k: len(v) for k, v in dm.splits.items()}
    assert _leaks(dm.splits) == {}


@pytest.mark.parametrize("name", ["vqa_rad", "vqa_rad_parquet", "pmc_vqa"])
def test_overlap_shipped_by_a_release_is_reported(release, name, caplog):
    """VQA-RAD's test questions reuse train images; PMC-VQA puts figures of one article on both sides."""
    reader = {"pmc_vqa": pmc_vqa.read}.get(name, vqa_rad.read)
    dm = MedVQADataModule(reader, str(release(name)), split_by="official")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert _leaks(dm.splits)
    assert "share" in caplog.text and "data.split_by=group" in caplog.text


def test_overlapping_sources_of_a_mixture_keep_a_picture_on_one_side(release, tmp_path):
    """Kvasir-VQA-x1 reuses Kvasir-VQA's pictures: the carved Kvasir-VQA splits follow x1's official ones."""
    (tmp_path / "kvasir").symlink_to(release("kvasir_vqa"))
    (tmp_path / "x1").symlink_to(release("kvasir_vqa_x1"))
    sources = {"kvasir": {"reader": kvasir_vqa.read}, "x1": {"reader": kvasir_vqa_x1.read}}
    for seed in range(5):
        dm = MedVQADataModule(lambda root, bad: mix.read(root, bad, sources), str(tmp_path), seed=seed)
        dm.setup()
        assert _leaks(dm.splits) == {}
        assert {s.source for s in dm.splits["test"]} == {"kvasir", "x1"}  # each source has its own share


def test_single_source_carving_is_seeded_and_sized_by_groups(release):
    samples = kvasir_vqa.read(release("kvasir_vqa"))
    a = make_splits(samples, 0.1, 0.2, seed=0)
    ids = {k: [s.id for s in v] for k, v in a.items()}
    b = make_splits(kvasir_vqa.read(release("kvasir_vqa")), 0.1, 0.2, seed=0)
    assert ids == {k: [s.id for s in v] for k, v in b.items()}
    # 11 images: round(11 * 0.2) = 2 to test, then round(9 * 0.1 / 0.8) = 1 to val, 8 stay in train
    assert {k: len({s.image_id for s in v}) for k, v in a.items()} == {"train": 8, "val": 1, "test": 2}
