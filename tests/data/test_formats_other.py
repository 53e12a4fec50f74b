"""Readers of Kvasir-VQA (+x1), PathVQA, PMC-VQA, JSON Lines and mixtures on fixtures in their shipped layouts."""

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.filters import select
from medvqa.data.fixtures.other import kvasir_img_id
from medvqa.data.fixtures.pictures import encoded
from medvqa.data.formats import jsonl, kvasir_vqa, kvasir_vqa_x1, mix, path_vqa, pmc_vqa, slake, vqa_rad
from medvqa.data.images import open_image


def _pixels(root: Path, sample) -> np.ndarray:
    sample.image = str(root / sample.image)
    return np.asarray(open_image(sample))


def _decoded(seed: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encoded(seed, 64))).convert("RGB"))


# -- Kvasir-VQA ----------------------------------------------------------------------------------------
def test_kvasir_vqa_reads_every_shard_without_a_split(release):
    root = release("kvasir_vqa")
    samples = kvasir_vqa.read(root)
    assert len(samples) == 11 * 6 and {s.split for s in samples} == {"train"}  # no official split
    assert {s.image for s in samples} == {"data/00000.parquet", "data/00001.parquet"}
    assert len({s.image_id for s in samples}) == 11
    # image 5's six questions straddle the two shards: one image id, the same pixels from either shard
    rows = [s for s in samples if s.extra["img_id"] == kvasir_img_id(5)]
    assert {s.image for s in rows} == {"data/00000.parquet", "data/00001.parquet"}
    assert len({s.image_id for s in rows}) == 1
    assert all(np.array_equal(_pixels(root, s), _decoded(7005)) for s in (rows[0], rows[-1]))


def test_kvasir_vqa_question_kinds_and_fields(release):
    samples = kvasir_vqa.read(release("kvasir_vqa"))
    kinds = {s.question: s.question_type for s in samples if s.extra["img_id"] == kvasir_img_id(0)}
    assert kinds == {
        "What type of procedure is the image taken from?": "PROCEDURE",
        "Is there a green/black box artefact?": "YESNO",
        "Are there any abnormalities in the image? Check all that are present.": "CHOICE",
        "What color is the abnormality? If more than one separate with ;": "COLOR",
        "Where in the image is the abnormality?": "POS",
        "How many findings are present?": "COUNT",
    }
    # yes/no: the artefact question on all 11 images, and the abnormality list when it is "no" (i = 2, 5, 8)
    assert Counter(s.answer_type for s in samples if s.question_type == "YESNO") == {"closed": 11 + 3}
    assert {s.extra["image_source"] for s in samples} == {"hyperkvasir", "kvasir-instrument"}
    assert {s.modality for s in samples} == {"endoscopy"}


def test_kvasir_vqa_x1_keeps_complexity_and_split(release):
    root = release("kvasir_vqa_x1")
    samples = kvasir_vqa_x1.read(root)
    assert Counter(s.split for s in samples) == {"train": 18, "test": 6}
    assert Counter(s.extra["complexity"] for s in samples) == {1: 8, 2: 8, 3: 8}
    assert len(select(samples, {"complexity": [1, 2]})) == 16
    hardest = next(s for s in samples if s.extra["complexity"] == 3)
    assert hardest.extra["question_class"] == ["procedure", "artefact", "abnormality"]
    assert hardest.question_type == "procedure,artefact,abnormality"
    assert hardest.image == f"images/{hardest.extra['img_id']}.jpg" and (root / hardest.image).is_file()
    # one namespace with kvasir_vqa: the same picture is the same group in a mixture
    assert hardest.image_id == f"kvasir-{hardest.extra['img_id']}"
    assert "original" not in hardest.extra
    assert kvasir_vqa_x1.read(root, keep_original=True)[0].extra["original"].startswith("[{")


# -- PathVQA -------------------------------------------------------------------------------------------
def test_path_vqa_splits_by_file_and_groups_by_picture(release):
    root = release("path_vqa")
    samples = path_vqa.read(root)
    assert Counter(s.split for s in samples) == {"train": 10, "val": 4, "test": 4}
    assert len({s.image_id for s in samples}) == 9
    assert {s.answer_type for s in samples if s.answer in ("yes", "no")} == {"closed"}
    test = next(s for s in samples if s.split == "test")
    assert np.array_equal(_pixels(root, test), _decoded(3007))


# -- PMC-VQA -------------------------------------------------------------------------------------------
def test_pmc_vqa_prompt_lists_choices_and_answer_is_the_letter(release):
    root = release("pmc_vqa")
    samples = pmc_vqa.read(root)
    assert Counter(s.split for s in samples) == {"train": 7, "test": 3}
    first = samples[0]
    assert first.question == (
        'Which modality, as shown, was used?\nA: CT\nB: MRI, T2-weighted\nC: Ultrasound "B-mode"\nD: PET\n'
        "Answer with the option's letter from the given choices."
    )
    assert [s.answer for s in samples[:4]] == ["A", "B", "C", "D"]
    assert first.answer_type == "closed" and first.patient_id == "pmc-PMC8000000"
    # read from inside images.zip, never unpacked
    assert first.image == "images.zip" and first.image_member == "images/PMC8000000_Fig1_0.jpg"
    assert np.array_equal(_pixels(root, first), _decoded(4000))


def test_pmc_vqa_text_answers_and_unpacked_images(release):
    samples = pmc_vqa.read(release("pmc_vqa", unpacked=True), answer_format="text")
    assert [s.answer for s in samples[:4]] == ["CT", "MRI, T2-weighted", 'Ultrasound "B-mode"', "PET"]
    assert samples[0].image == "images/PMC8000000_Fig1_0.jpg" and not samples[0].image_member
    assert "Answer with the option's letter" not in samples[0].question
    with pytest.raises(DataError, match="answer_format='word'"):
        pmc_vqa.read(release("pmc_vqa"), answer_format="word")


def test_pmc_vqa_bad_label_and_missing_member_are_named_or_counted(release_copy):
    root = release_copy("pmc_vqa")
    rows = list(csv.reader((root / "train.csv").open(encoding="utf-8")))
    rows[2][-1] = "E"  # csv line 3
    rows[3][0] = "PMC0_missing.jpg"
    with (root / "train.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DataError, match="train.csv row 3: Answer_label is not the letter"):
        pmc_vqa.read(root)
    bad = BadSamples("skip")
    assert len(pmc_vqa.read(root, bad)) == 10 - 2
    assert bad.skipped == {
        "Answer_label is not the letter of a given choice": 1,
        "image not in images.zip": 1,
    }


# -- JSON Lines ----------------------------------------------------------------------------------------
def test_jsonl_reads_plain_and_chat_lines(release):
    root = release("jsonl")
    samples = {s.id: s for s in jsonl.read(root)}
    assert Counter(s.split for s in samples.values()) == {"train": 6, "val": 1, "test": 2}
    assert samples["train-1"].extra == {"site": "wrist"} and samples["train-1"].modality == "X-Ray"
    assert samples["train-2"].answer == "3" and samples["train-2"].answer_type == "open"
    # a two-turn chat line: two questions on one image, the <image> tag and the system turn dropped
    turns = [samples["train-4-t0"], samples["train-4-t1"]]
    assert [(t.question, t.answer) for t in turns] == [
        ("Which organ is shown?", "lung"),
        ("Is it abnormal?", "yes"),
    ]
    assert {t.image for t in turns} == {"scans/p2.png"} and {t.patient_id for t in turns} == {"p2"}
    assert samples["test-2"].question == "Which side is the mass on?" and samples["test-2"].split == "test"
    assert samples["train-3"].image.endswith(".dcm") and samples["train-3"].answer_type == "closed"


def test_jsonl_bad_lines_are_named_or_counted(release_copy):
    root = release_copy("jsonl")
    with (root / "train.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"image": "scans/p0.png", "question": "Is it?"\n')
        f.write('{"messages": [{"role": "user", "content": "<image>Q"}], "images": ["a.png", "b.png"]}\n')
    with pytest.raises(DataError, match="train.jsonl line 7: malformed JSON"):
        jsonl.read(root)
    bad = BadSamples("skip")
    assert len(jsonl.read(root, bad)) == 9
    assert bad.skipped == {"malformed JSON": 1, "2 images on a chat line": 1}


# -- mixtures ------------------------------------------------------------------------------------------
def test_mix_reads_each_source_from_its_folder_and_keeps_its_name(release):
    root = release("mix")
    sources = {
        "rad": {"root": "vqa_rad", "reader": vqa_rad.read},
        "slake": {"reader": slake.read},  # root defaults to the source's name
        "medpix": None,  # left out
    }
    samples = mix.read(root, None, sources)
    assert Counter(s.source for s in samples) == {"rad": 40, "slake": 36}
    assert all(s.id.startswith(f"{s.source}/") for s in samples)
    assert all((root / s.image).is_file() for s in samples)
    assert samples[0].image.startswith("vqa_rad/VQA_RAD Image Folder/")


def test_mix_refuses_sources_outside_data_root(release):
    with pytest.raises(DataError, match="escapes data.root"):
        mix.read(release("mix") / "slake", None, {"rad": {"root": "../vqa_rad", "reader": vqa_rad.read}})
    with pytest.raises(DataError, match="sources is empty"):
        mix.read(release("mix"), None, {})
