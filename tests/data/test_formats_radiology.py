"""Readers of the radiology releases on fixtures in their shipped layouts: VQA-RAD (OSF full and reduced,
parquet), SLAKE, MedPix 2.0."""

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.filters import select
from medvqa.data.fixtures.pictures import encoded
from medvqa.data.fixtures.radiology import MEDPIX_DIAGNOSIS
from medvqa.data.formats import medpix, slake, vqa_rad
from medvqa.data.images import open_image


def _at(root: Path, sample):
    """The sample with its image resolved under root, as the datamodule hands it to a dataset."""
    sample.image = str(root / sample.image)
    return sample


# -- VQA-RAD -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduced", [False, True], ids=["14-key", "8-key"])
def test_vqa_rad_osf_reads_both_record_shapes(release, reduced):
    root = release("vqa_rad", reduced=reduced)
    rows = json.loads((root / "VQA_RAD Dataset Public.json").read_text())
    assert len(rows[0]) == (8 if reduced else 14)
    samples = vqa_rad.read(root)
    assert len(samples) == len(rows) == 40
    # test = phrase_type starting with "test": images 4-5 (both sides, as shipped) and 6-7 (test only)
    assert Counter(s.split for s in samples) == {"train": 24, "test": 16}
    count = next(s for s in samples if s.question.startswith("How many") and s.image.endswith("10000.jpg"))
    assert count.answer == "1" and count.answer_type == "open"  # the release stores a number
    lateral = next(s for s in samples if "left side" in s.question)
    assert lateral.question_type == "PRES, POS" and lateral.answer_type == "closed"
    assert select(samples, {"question_type": "POS"}) == [s for s in samples if "left side" in s.question]
    assert {s.organ for s in samples} == {"head", "chest", "abdomen"}
    # the case id (two images per case) is the patient, when the 14-key record carries the case URL
    assert {s.patient_id for s in samples} == ({""} if reduced else {f"case-{i}" for i in range(4)})
    assert (root / samples[0].image).is_file()


def test_vqa_rad_propagates_modality_answers_to_the_image(release):
    samples = vqa_rad.read(release("vqa_rad"))
    by_image = {s.image: (s.modality, s.extra["modality_raw"]) for s in samples}
    assert by_image["VQA_RAD Image Folder/synpic10000.jpg"] == ("CT", "ct")  # the vocabulary's name, raw kept
    assert by_image["VQA_RAD Image Folder/synpic10001.jpg"] == ("MRI", "mri")
    assert by_image["VQA_RAD Image Folder/synpic10002.jpg"] == ("X-ray", "x-ray")


def test_vqa_rad_parquet_keeps_pointers_and_decodes_one_row(release):
    root = release("vqa_rad_parquet")
    samples = vqa_rad.read(root)
    assert Counter(s.split for s in samples) == {"train": 24, "test": 16}
    assert all(s.image.startswith("data/") and s.image_row is not None for s in samples)
    # one picture repeated on many rows is one image id; 8 pictures in all
    assert len({s.image_id for s in samples}) == 8
    assert (
        len(
            {s.image_id for s in samples if s.split == "test"}
            & {s.image_id for s in samples if s.split == "train"}
        )
        == 2
    )
    sample = next(s for s in samples if s.split == "train" and s.image_row == 13)  # row group 2 of 3
    expected = np.asarray(Image.open(io.BytesIO(encoded(10003, 64))).convert("RGB"))
    assert np.array_equal(np.asarray(open_image(_at(root, sample))), expected)
    assert sample.answer_type == ("closed" if sample.answer in ("yes", "no") else "open")


def test_vqa_rad_missing_files_name_the_fix(tmp_path):
    with pytest.raises(
        DataError, match="no 'VQA_RAD Dataset Public.json', no trainset.json and no \\*.parquet.*OSF"
    ):
        vqa_rad.read(tmp_path)


# -- SLAKE ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("val_name", ["validate.json", "validation.json"])
def test_slake_keeps_english_rows_of_all_three_files(release, val_name):
    root = release("slake", val_name=val_name)
    samples = slake.read(root)
    assert len(samples) == 9 * 4  # 9 images x 4 English questions; the 2 Chinese ones per image dropped
    assert Counter(s.split for s in samples) == {"train": 20, "val": 8, "test": 8}
    assert not any("\u4e00" <= ch <= "\u9fff" for s in samples for ch in s.question)
    kidneys = next(s for s in samples if s.question.startswith("How many kidneys"))
    assert kidneys.answer == "2" and kidneys.question_type == "COUNT"
    lung = next(
        s
        for s in samples
        if s.question.startswith("Does the picture") and s.image.endswith("xmlab1/source.jpg")
    )
    assert (lung.answer, lung.answer_type, lung.modality, lung.organ) == ("Yes", "closed", "X-ray", "lung")
    assert lung.extra["modality_raw"] == "X-Ray"  # as the release spells it
    assert {s.question_type for s in samples} == {"MODALITY", "ORGAN", "COUNT", "POS"}
    assert all((root / s.image).is_file() for s in samples)


def test_slake_other_language_and_missing_train(release, tmp_path):
    assert len(slake.read(release("slake"), language="zh")) == 9 * 2
    with pytest.raises(DataError, match="no train.json"):
        slake.read(tmp_path)


# -- MedPix 2.0 ----------------------------------------------------------------------------------------
def test_medpix_makes_questions_from_fields_and_skips_missing_ones(release):
    samples = medpix.read(release("medpix"))
    kinds = Counter(s.extra["kind"] for s in samples)
    # 16 images; Plane missing on 2 and not a plane on 5, Location Category missing on 2 (one case),
    # Caption missing on 1
    assert kinds == {"modality": 16, "modality_yn": 16, "plane": 9, "location": 14, "caption": 15}
    ct = next(
        s for s in samples if s.image == "images/MPX1001_synpic20010.png" and s.extra["kind"] == "modality"
    )
    assert (ct.answer, ct.modality, ct.plane, ct.organ, ct.patient_id) == (
        "CT",
        "CT",
        "coronal",
        "thorax",
        "MPX1001",
    )
    mr = next(
        s for s in samples if s.image == "images/MPX1001_synpic20011.png" and s.extra["kind"] == "modality"
    )
    assert mr.answer == "MRI" and mr.extra["modality_detail"] == "MR - T2 weighted"
    caption = next(s for s in samples if s.extra["kind"] == "caption")
    assert caption.answer == caption.caption and caption.answer.startswith("Finding")


def test_medpix_yes_no_questions_are_true_and_balanced(release):
    yn = [s for s in medpix.read(release("medpix")) if s.extra["kind"] == "modality_yn"]
    for s in yn:
        asked = "CT" if " CT " in s.question else "MRI"
        assert s.answer == ("yes" if asked == s.modality else "no") and s.answer_type == "closed"
    assert set(Counter(s.answer for s in yn)) == {"yes", "no"}


def test_medpix_case_diagnosis_reaches_only_the_caption_questions_that_quote_it(release):
    """Case_topic.json's diagnosis and titles are never read (even with the case findings asked for); the
    two captions that quote the diagnosis are the answers of their caption questions and on no other record."""
    samples = medpix.read(release("medpix"), questions=list(medpix.QUESTIONS))
    assert (
        sum(s.extra["kind"] == "findings" for s in samples) == 8
    )  # cases with a Findings field: 4 x 2 images
    leaking = [s for s in samples if MEDPIX_DIAGNOSIS.lower() in json.dumps(s.to_dict()).lower()]
    assert [(s.image, s.extra["kind"]) for s in leaking] == [
        ("images/MPX1001_synpic20010.png", "caption"),
        ("images/MPX1007_synpic20070.png", "caption"),
    ]
    assert all(s.caption == "" for s in samples if s.extra["kind"] != "caption")


def test_medpix_official_case_split_or_none(release):
    official = medpix.read(release("medpix"))
    cases = {
        split: {s.patient_id for s in official if s.split == split} for split in ("train", "val", "test")
    }
    assert cases == {
        "train": {f"MPX100{i}" for i in range(1, 6)},
        "val": {"MPX1006"},
        "test": {"MPX1007", "MPX1008"},
    }
    assert {s.split for s in medpix.read(release("medpix", official_split=False))} == {"train"}


def test_medpix_refuses_unknown_question_kinds(release):
    with pytest.raises(DataError, match="data.reader.questions: unknown \\['diagnosis'\\]"):
        medpix.read(release("medpix"), questions=["diagnosis"])


def test_medpix_bad_row_is_named_or_counted(release_copy):
    root = release_copy("medpix")
    rows = json.loads((root / "Descriptions.json").read_text())
    del rows[0]["image"]
    (root / "Descriptions.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"Descriptions.json row 0: missing key\(s\) image"):
        medpix.read(root)
    bad = BadSamples("skip")
    assert len(medpix.read(root, bad)) == 70 - 5  # that image's five questions
    assert bad.skipped == {"missing key(s) image": 1}
