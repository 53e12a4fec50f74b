"""Preference pairs: the JSONL file, mining from labels, on-policy answers, and their collation."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medvqa.data.collate import IGNORE_INDEX, VQACollator
from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats.synthetic import read as read_synthetic
from medvqa.data.preference import PairCollator, PreferenceSet, mine_pairs, opposite, read_pairs_file
from medvqa.data.sample import VQASample


def _s(i, answer, kind="open", qtype="ORGAN", organ="chest"):
    return VQASample(id=f"s{i}", image="x.jpg", question="q?", answer=answer, answer_type=kind,
                     question_type=qtype, organ=organ)  # fmt: skip


def test_opposite_swaps_words_that_have_one():
    assert opposite("yes") == "no" and opposite("no") == "yes"
    assert opposite("left lung") == "right lung"
    assert opposite("liver") is None


@pytest.mark.parametrize(
    ("answer", "rejected"),
    [("Yes", "No"), ("NO", "YES"), ("Left lung", "Right lung"), ("LEFT", "RIGHT"), ("Yes.", "No."),
     ("left-sided, upper lobe", "right-sided, lower lobe"), ("The lesion is Benign!", "The lesion is Malignant!"),
     ("  yes ", "  no "), ("pH normal", "pH abnormal")],
)  # fmt: skip
def test_opposite_keeps_the_release_spelling_and_format(answer, rejected):
    """Only the swapped words change, each in the case of the word it replaces: a preference between 'Yes'
    and 'no' would partly teach capitalisation."""
    assert opposite(answer) == rejected


def test_mined_closed_rejection_is_spelt_like_the_chosen_answer():
    pairs, _ = mine_pairs([_s(0, "Yes", "closed", "PRES"), _s(1, "Left.", "closed", "POS")])
    assert [(p.sample.answer, p.rejected) for p in pairs] == [("Yes", "No"), ("Left.", "Right.")]


def test_mined_closed_gets_opposite_open_gets_another_answer_of_same_type_and_organ():
    samples = [
        _s(0, "yes", "closed", "PRES"),
        _s(1, "left", "closed", "POS"),
        _s(2, "lung", qtype="ORGAN", organ="chest"),
        _s(3, "heart", qtype="ORGAN", organ="chest"),
        _s(4, "brain", qtype="ORGAN", organ="head"),
        _s(5, "ct", qtype="MODALITY", organ="head"),  # alone in its type: nothing to mine
    ]
    pairs, missing = mine_pairs(samples, seed=0)
    rejected = {p.sample.id: p.rejected for p in pairs}
    assert rejected["s0"] == "no" and rejected["s1"] == "right"
    assert rejected["s2"] == "heart" and rejected["s3"] == "lung"  # same type AND organ
    assert rejected["s4"] in {"lung", "heart"}  # no other head organ answer: same type, any organ
    assert "s5" not in rejected and missing == 1
    assert all(p.source == "mined" for p in pairs)
    assert mine_pairs(samples, seed=0)[0] == pairs  # deterministic


def _image(root, name="img.jpg"):
    Image.fromarray(np.full((32, 32, 3), 100, dtype=np.uint8)).save(root / name)


def test_pairs_file_reads_and_errors_name_file_and_line(tmp_path):
    _image(tmp_path)
    good = {"image": "img.jpg", "question": "Is there a lesion?", "chosen": "yes", "rejected": "no"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good | {"answer_type": "open", "id": "p2"}) + "\n")
    pairs = read_pairs_file(path, tmp_path)
    assert [p.sample.answer_type for p in pairs] == ["closed", "open"]  # inferred from "yes", then given
    assert pairs[1].sample.id == "p2" and pairs[0].rejected == "no" and pairs[0].source == "file"
    assert pairs[0].sample.image == str(tmp_path / "img.jpg")

    bad_rows = [
        good | {"rejected": ""},
        good | {"image": "missing.jpg"},
        good | {"image": "../img.jpg"},
        "{oops",
    ]
    for row in bad_rows:
        path.write_text(json.dumps(good) + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n")
        with pytest.raises(DataError, match=r"pairs.jsonl line 2"):
            read_pairs_file(path, tmp_path)
    bad = BadSamples("skip")
    assert len(read_pairs_file(path, tmp_path, bad)) == 1 and bad.skipped == {"not valid JSON": 1}
    with pytest.raises(DataError, match="stage.pairs_file"):
        read_pairs_file(tmp_path / "nope.jsonl", tmp_path)


def test_bad_sources_are_config_errors():
    with pytest.raises(ValueError, match="stage.sources"):
        PreferenceSet(["mined", "random"])
    with pytest.raises(ValueError, match="stage.pairs_file"):
        PreferenceSet(["file"])


def test_pair_collator_masks_all_but_each_answer(tiny):
    vlm = tiny("qwen2_vl")
    tok = vlm.processor.tokenizer
    image = Image.fromarray(np.full((40, 60, 3), 90, dtype=np.uint8))
    items = [
        {"sample": _s(0, "yes", "closed"), "image": image, "rejected": "no", "source": "mined"},
        {"sample": _s(1, "left lung"), "image": image, "rejected": "right kidney", "source": "file"},
    ]
    batch = PairCollator(VQACollator(vlm.processor))(items)
    assert batch["input_ids"].shape[0] == 4 and batch["meta"]["id"] == ["s0", "s1"]
    assert batch["meta"]["rejected"] == ["no", "right kidney"] and batch["meta"]["source"] == [
        "mined",
        "file",
    ]
    for row, answer in enumerate(["yes", "left lung", "no", "right kidney"]):
        labels = batch["labels"][row]
        expected = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert labels[labels != IGNORE_INDEX].tolist() == expected
    # chosen and rejected rows share the prompt (same tokens before the answer)
    for i in range(2):
        n = int((batch["labels"][i] == IGNORE_INDEX).long().argmin())
        assert torch.equal(batch["input_ids"][i, :n], batch["input_ids"][i + 2, :n])


@pytest.fixture
def datamodule(tiny, tmp_path):
    return MedVQADataModule(
        reader=lambda root, bad: read_synthetic(root, bad, n_patients=12, images_per_patient=1, image_size=56),
        root=str(tmp_path), batch_size=4, split_by="group", processor=tiny("qwen2_vl").processor,
    )  # fmt: skip


def test_datamodule_yields_pairs_once_a_preference_set_is_attached(datamodule):
    datamodule.setup("fit")
    assert "rejected" not in next(iter(datamodule.train_dataloader()))["meta"]
    datamodule.pairs = PreferenceSet(["mined"])
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * len(batch["meta"]["id"]) == 8
    assert all(r != a for r, a in zip(batch["meta"]["rejected"], batch["meta"]["answer"], strict=True))
    assert datamodule.pairs.counts["mined"] > 0


def test_on_policy_keeps_only_wrong_answers_and_takes_precedence(datamodule):
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    pref = PreferenceSet(["mined", "on_policy"], on_policy_limit=None)
    # a fake model: right on even positions, wrong ("banana") on odd ones
    pref.answer_fn = lambda samples: [s.answer if i % 2 == 0 else "banana" for i, s in enumerate(samples)]
    pairs = pref.build(train, datamodule.root)
    by_id = {p.sample.id: p for p in pairs}
    assert sum(p.source == "on_policy" for p in pairs) == len(train) // 2
    assert all(p.rejected == "banana" for p in pairs if p.source == "on_policy")
    assert by_id[train[0].id].source == "mined" and by_id[train[1].id].source == "on_policy"
    limited = PreferenceSet(["on_policy"], on_policy_limit=3)
    limited.answer_fn = lambda samples: ["banana"] * len(samples)
    assert len(limited.build(train, datamodule.root)) == 3
