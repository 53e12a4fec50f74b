"""The readers on the releases as people have them (issue 18): VQA-RAD in the GitHub / MICCAI19-MedVQA
layout, SLAKE 1.0's quirks and content types, MedPix 2.0's plane values and diagnosis-quoting captions,
the vocabulary release values map onto, and the error when no image is found."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from functools import partial

import pytest

from medvqa.data.collate import VQACollator
from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.errors import BadSamples, DataError
from medvqa.data.fixtures.radiology import (
    GITHUB_MODALITIES,
    GITHUB_PLANES,
    MEDPIX_DIAGNOSIS,
    SLAKE_QUIRK,
)
from medvqa.data.formats import medpix, slake, vocab, vqa_rad
from medvqa.run import train
from tests.conftest import compose_cfg
from tests.data.test_nested_release import medpix_clone
from tests.data.test_readers_run import FAST


# -- VQA-RAD, GitHub layout ----------------------------------------------------------------------------
def test_vqa_rad_github_layout_is_read_as_it_is(release, caplog):
    root = release("vqa_rad_github")
    files = {split: json.loads((root / f"{split}set.json").read_text()) for split in ("train", "test")}
    assert {len(r) for rows in files.values() for r in rows} == {8}
    assert {r["phrase_type"] for r in files["test"]} == {"freeform", "para"}  # no test_ prefix
    with caplog.at_level(logging.INFO):
        samples = vqa_rad.read(root)
    assert "VQA-RAD: reading the GitHub (MICCAI19-MedVQA) layout" in caplog.text
    # the split is the file; the image is the group (no case URL in 8-key rows)
    assert Counter(s.split for s in samples) == {"train": len(files["train"]), "test": len(files["test"])}
    assert {s.id for s in samples if s.split == "test"} == {f"vqa_rad-{r['qid']}" for r in files["test"]}
    assert {s.patient_id for s in samples} == {""} and {s.group for s in samples} == {
        f"images/synpic{30000 + i}.jpg" for i in range(8)
    }
    assert all((root / s.image).is_file() for s in samples)
    # "CLOSED " with a trailing space is closed; numeric answers become text
    spaced = {f"vqa_rad-{r['qid']}" for r in files["train"] if r["answer_type"] == "CLOSED "}
    assert len(spaced) == 2 and {s.answer_type for s in samples if s.id in spaced} == {"closed"}
    assert [s.answer for s in samples if s.question_type == "COUNT"][:3] == ["1", "2", "3"]
    # the release's typos name their question types
    typed = {(r["question_type"], s.question_type) for r, s in zip(files["train"], samples, strict=False)}
    assert {("ATRIB", "ATTRIB"), ("PRSE, POS", "PRES, POS")} <= typed
    assert not {t for s in samples for t in s.question_type.split(", ")} & {"ATRIB", "PRSE"}


def test_vqa_rad_osf_layout_is_named_too(release, caplog):
    with caplog.at_level(logging.INFO):
        vqa_rad.read(release("vqa_rad"))
    assert "VQA-RAD: reading the OSF layout" in caplog.text


def test_vqa_rad_github_clone_is_found_from_the_repository_root(release, tmp_path):
    repo = tmp_path / "MICCAI19-MedVQA"
    shutil.copytree(release("vqa_rad_github"), repo / "data_RAD")
    (repo / "main.py").write_text("# code\n")
    dm = MedVQADataModule(partial(vqa_rad.read), str(repo), val_fraction=0.0)
    dm.setup()
    assert len(dm.splits["test"]) == len(json.loads((repo / "data_RAD" / "testset.json").read_text()))


def test_vqa_rad_github_half_copy_names_the_missing_file(release_copy):
    root = release_copy("vqa_rad_github")
    (root / "testset.json").unlink()
    with pytest.raises(DataError, match="has trainset.json but no testset.json"):
        vqa_rad.read(root)


def test_vqa_rad_image_attributes_use_the_vocabulary_and_keep_the_raw_answer(release):
    samples = vqa_rad.read(release("vqa_rad_github"))
    got = {s.image: (s.modality, s.extra["modality_raw"], s.plane, s.extra["plane_raw"]) for s in samples}
    assert got == {
        f"images/synpic{30000 + i}.jpg": (m_name, m_raw, p_name, p_raw)
        for i, ((m_raw, m_name), (p_raw, p_name)) in enumerate(
            zip(GITHUB_MODALITIES, GITHUB_PLANES, strict=True)
        )
    }
    assert {s.modality for s in samples} == {"MRI", "", "X-ray", "CT", "ultrasound"}


@pytest.mark.parametrize(
    ("value", "modality"),
    [("with contrast", ""), ("oral and iv", ""), ("t2 weighted", "MRI"), ("gadolinium", "MRI"),
     ("MR - FLAIR", "MRI"), ("mri-dwi", "MRI"), ("cxr", "X-ray"), ("xray", "X-ray"), ("X-Ray", "X-ray"),
     ("plain film", "X-ray"), ("cta - ct angiography", "CT"), ("CT with GI and IV contrast", "CT"),
     ("MR", "MRI"), ("ultrasound", "ultrasound"), ("paranasal", "")],
)  # fmt: skip
def test_modality_vocabulary(value, modality):
    assert vocab.modality(value) == modality


@pytest.mark.parametrize(
    ("value", "plane"),
    [("Axial", "axial"), ("axial plane", "axial"), ("Transverse", "axial"), ("posteroanterior", "pa"),
     ("PA", "pa"), ("Lateral", "lateral"), ("mid abdomen", ""), ("NOS - Not specified", ""),
     ("Other View (see caption)", ""), ("Photograph", ""), ("Gross Pathology", ""), ("Drawing", ""),
     ("Multiple or Montage", ""), ("3D Reconstruction", "")],
)  # fmt: skip
def test_plane_vocabulary(value, plane):
    assert vocab.plane(value) == plane


# -- SLAKE 1.0 -----------------------------------------------------------------------------------------
SLAKE_TYPES = {"Abnormality": "ABN", "Color": "COLOR", "KG": "KG", "Modality": "MODALITY", "Organ": "ORGAN",
               "Plane": "PLANE", "Position": "POS", "Quantity": "COUNT", "Shape": "ATTRIB", "Size": "SIZE"}  # fmt: skip


def test_slake_maps_every_content_type_it_ships(release):
    samples = slake.read(release("slake_official"))
    assert {s.extra["content_type"]: s.question_type for s in samples} == SLAKE_TYPES


def test_slake_known_empty_answer_is_skipped_counted_and_named(release, caplog):
    bad = BadSamples("error")  # the default: the quirk is no user error
    with caplog.at_level(logging.WARNING):
        samples = slake.read(release("slake_official"), bad)
    assert bad.skipped == {"known release quirk: empty answer": 1}
    lines = [r.getMessage() for r in caplog.records if "known quirk" in r.getMessage()]
    assert len(lines) == 1 and "train.json row 30 (qid 1622, xmlab281/source.jpg): empty answer" in lines[0]
    assert not any("xmlab281" in s.image for s in samples) and len(samples) == 9 * 10


def test_slake_other_empty_answers_stay_errors(release_copy):
    root = release_copy("slake_official")
    rows = json.loads((root / "train.json").read_text())
    rows[0]["answer"] = ""  # not the known row: the user can fix it
    (root / "train.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"train.json row 0: empty answer.*on_bad_sample=skip"):
        MedVQADataModule(partial(slake.read), str(root)).setup()
    assert SLAKE_QUIRK["answer"] == ""


def test_slake_abn_filter_keeps_the_abnormality_questions(release):
    root = release("slake_official")
    dm = MedVQADataModule(partial(slake.read), str(root), filters={"question_type": "ABN"},
                          filter_splits=["train", "val", "test"])  # fmt: skip
    dm.setup()
    for split, rows in dm.splits.items():
        assert rows and {s.extra["content_type"] for s in rows} == {"Abnormality"}, split
    everything = slake.read(root)
    assert sum(map(len, dm.splits.values())) == sum(
        s.extra["content_type"] == "Abnormality" for s in everything
    )


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_every_image_missing_says_so(release_copy, mode):
    root = release_copy("slake")
    shutil.rmtree(root / "imgs")
    with pytest.raises(
        DataError, match=r"36 of 36 rows skipped: image file not found, e\.g\. imgs/xmlab0/source\.jpg"
    ):
        MedVQADataModule(partial(slake.read), str(root), on_bad_sample=mode).setup()


# -- MedPix 2.0 ----------------------------------------------------------------------------------------
def test_medpix_from_the_repository_root_asks_no_plane_question_without_a_plane(tmp_path):
    repo = medpix_clone(tmp_path / "MedPix-2.0")
    dm = MedVQADataModule(partial(medpix.read), str(repo))
    dm.setup()
    samples = [s for rows in dm.splits.values() for s in rows]
    planes = [s for s in samples if s.extra["kind"] == "plane"]
    assert {s.answer for s in planes} <= {name for name, _ in vocab.PLANE_WORDS}
    raw = {s.image: s.extra["plane_raw"] for s in samples}
    asked = {s.image for s in planes}
    assert {raw[i] for i in raw if i not in asked} == {"", "NOS - Not specified", "Other View (see caption)",
                                                        "Photograph", "Gross Pathology", "Drawing"}  # fmt: skip
    transverse = next(s for s in planes if s.extra["plane_raw"] == "Transverse")
    assert transverse.answer == transverse.plane == "axial"


def test_medpix_caption_reaches_no_prompt_but_the_caption_questions(release, tiny):
    """The prompt the collator builds from `{caption}`: a caption quoting the diagnosis shows in the caption
    question's prompt only (where the caption is the answer), never in another question's."""
    dm = MedVQADataModule(partial(medpix.read), str(release("medpix")), prompt_template="{caption}\n{question}",
                          processor=tiny("qwen2_vl").processor)  # fmt: skip
    dm.setup()
    collator: VQACollator = dm.collator()
    prompts = [(s.extra["kind"], collator.prompt_text(s)) for rows in dm.splits.values() for s in rows]
    leaking = Counter(kind for kind, prompt in prompts if MEDPIX_DIAGNOSIS in prompt)
    assert leaking == {"caption": 2}
    assert all("Finding" not in prompt for kind, prompt in prompts if kind != "caption")


# -- data.filters / data.filter_splits / data.limit -----------------------------------------------------
def test_filters_apply_to_the_named_splits_and_log_what_each_kept(release, caplog):
    root = str(release("vqa_rad_github"))
    with caplog.at_level(logging.INFO):
        default = MedVQADataModule(partial(vqa_rad.read), root, filters={"question_type": "PRES"})
        default.setup()
    assert {s.question_type for s in default.splits["train"] + default.splits["val"]} <= {"PRES", "PRES, POS"}
    assert len(default.splits["test"]) == 8 and {s.question_type for s in default.splits["test"]} == {
        "PRES", "ORGAN"}  # test stays whole by default  # fmt: skip
    assert "kept: train 8 of 35, val 1 of 5, test 8 (not filtered)" in caplog.text
    every = MedVQADataModule(partial(vqa_rad.read), root, filters={"question_type": "PRES"},
                             filter_splits=["train", "val", "test"])  # fmt: skip
    every.setup()
    assert [s.question_type for s in every.splits["test"]] == ["PRES"] * 4
    with pytest.raises(DataError, match=r"data.filter_splits: unknown split\(s\) \['dev'\]"):
        MedVQADataModule(partial(vqa_rad.read), root, filters={"question_type": "PRES"},
                         filter_splits=["dev"]).setup()  # fmt: skip


def test_filters_that_keep_no_training_question_say_so(release):
    with pytest.raises(
        DataError, match=r"data.filters=\{'organ': 'knee'\} kept no training question \(train 0 of"
    ):
        MedVQADataModule(
            partial(vqa_rad.read), str(release("vqa_rad_github")), filters={"organ": "knee"}
        ).setup()


def test_limit_draws_rows_over_patients_seeded(release):
    root = str(release("medpix"))
    full = MedVQADataModule(partial(medpix.read), root)
    full.setup()
    assert len({s.patient_id for s in full.splits["train"][:16]}) == 2  # the first 16 rows: two cases
    picks = []
    for seed in (0, 0, 1):
        dm = MedVQADataModule(partial(medpix.read), root, limit={"train": 16}, seed=seed)
        dm.setup()
        picks.append([s.id for s in dm.splits["train"]])
        assert len(dm.splits["train"]) == 16
        assert len({s.patient_id for s in dm.splits["train"]}) == 5  # every training case
        assert len({s.image for s in dm.splits["train"]}) == 10  # and both images of each
        order = [s.id for s in full.splits["train"]]
        assert picks[-1] == sorted(picks[-1], key=order.index)  # in the release's order
    assert picks[0] == picks[1] and picks[0] != picks[2]


# -- the bars: two training steps through medvqa.run's train ---------------------------------------------
def test_vqa_rad_github_layout_trains_and_tests_on_testset_json(release, tmp_path):
    root = release("vqa_rad_github")
    fast = [f for f in FAST if not f.startswith("data.limit")]
    cfg = compose_cfg(["data=vqa_rad", f"data.root={root}", "trainer.max_steps=2", *fast], tmp_path)
    assert train(cfg)["test"]["test/loss"] > 0
    testset = json.loads((root / "testset.json").read_text())
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["samples"]["test"] == len(testset) and info["samples"]["train"] > 0
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in predictions) == sorted(f"vqa_rad-{r['qid']}" for r in testset)


def test_slake_official_trains_with_the_default_on_bad_sample_and_reports_the_skipped_row(
    release, tmp_path, capsys
):
    cfg = compose_cfg(["data=slake", f"data.root={release('slake_official')}", "trainer.max_steps=2", *FAST],
                      tmp_path)  # fmt: skip
    assert cfg.data.on_bad_sample == "error"
    assert train(cfg)["test"]["test/loss"] > 0
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["skipped_while_reading"] == {"known release quirk: empty answer": 1}
    assert "skipped 1 bad samples: 1 known release quirk: empty answer" in capsys.readouterr().out
