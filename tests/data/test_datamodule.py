"""data.on_bad_sample: a bad row or file is an error naming it, or skipped and counted; paths stay inside
data.root; unreadable images found while loading join the counts."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.errors import DataError
from medvqa.data.formats import vqa_rad

ANNOTATIONS = "VQA_RAD Dataset Public.json"


def _edit(root, change):
    rows = json.loads((root / ANNOTATIONS).read_text())
    change(rows)
    (root / ANNOTATIONS).write_text(json.dumps(rows))


def _breakages(root):
    """Four kinds of damage on rows of images 0, 2, 3 and a deleted image 1 (rows 4-7)."""

    def change(rows):
        rows[0]["question"] = "  "
        del rows[9]["question"]
        rows[13]["image_name"] = "../../outside.jpg"

    _edit(root, change)
    (root / "VQA_RAD Image Folder" / "synpic10001.jpg").unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda rows: rows[0].update(question=""), f"{ANNOTATIONS} row 0: empty question"),
        (lambda rows: rows[9].pop("question"), rf"{ANNOTATIONS} row 9: missing key\(s\) question"),
        (
            lambda rows: rows[13].update(image_name="../../x.jpg"),
            f"{ANNOTATIONS} row 13: image path escapes data.root",
        ),
        (lambda rows: rows[4].update(image_name="gone.jpg"), f"{ANNOTATIONS} row 4: image file not found"),
    ],
)
def test_error_mode_names_file_row_and_the_skip_switch(release_copy, damage, message):
    root = release_copy("vqa_rad")
    _edit(root, damage)
    with pytest.raises(DataError, match=message + r".*data.on_bad_sample=skip"):
        MedVQADataModule(vqa_rad.read, str(root)).setup()


def test_skip_mode_counts_each_reason(release_copy):
    root = release_copy("vqa_rad")
    _breakages(root)
    dm = MedVQADataModule(vqa_rad.read, str(root), on_bad_sample="skip")
    dm.setup()
    assert dict(dm.bad.skipped) == {
        "missing key(s) question": 1, "empty question": 1, "image path escapes data.root": 1,
        "image file not found": 4,  # image 1 carries four questions
    }  # fmt: skip
    assert sum(len(v) for v in dm.splits.values()) == 40 - 7
    assert all("outside" not in s.image and "10001" not in s.image for v in dm.splits.values() for s in v)
    assert dm.skipped_summary().startswith(
        "skipped 7 bad samples (data.on_bad_sample=skip): 4 image file not found"
    )


def test_unreadable_image_is_raised_or_dropped_and_counted(release_copy, tiny):
    root = release_copy("vqa_rad")
    strict = MedVQADataModule(vqa_rad.read, str(root))
    strict.setup()  # records only: no image is opened yet
    broken = strict.splits["train"][0].image
    Path(broken).write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match=f"{Path(broken).name}: cannot decode image"):
        strict.dataset("train")[0]

    dm = MedVQADataModule(vqa_rad.read, str(root), on_bad_sample="skip", batch_size=4,
                          processor=tiny("qwen2_vl").processor)  # fmt: skip
    dm.setup()
    dm.trainer = SimpleNamespace(training=True, testing=False)
    n_broken = sum(s.image == broken for s in dm.splits["train"])
    seen = 0
    for batch in dm.train_dataloader():
        seen += len(dm.on_after_batch_transfer(batch, 0)["meta"]["id"])
    assert n_broken == 4 and seen == len(dm.splits["train"]) - n_broken
    assert dm.bad.skipped == {"unreadable image (train)": n_broken}


def test_each_file_is_checked_once_however_many_rows_share_it(release):
    dm = MedVQADataModule(vqa_rad.read, str(release("vqa_rad_parquet")))
    dm.setup()
    rows = [s for v in dm.splits.values() for s in v]
    assert len({id(s.image) for s in rows}) == 2  # one path string per shard, shared by all its rows


def test_absolute_image_paths_outside_root_are_refused(release_copy):
    from medvqa.data.formats import jsonl

    root = release_copy("jsonl")
    with (root / "train.jsonl").open("a") as f:
        f.write(json.dumps({"image": "/etc/hostname", "question": "q?", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match="train.jsonl line 7: image path escapes data.root.*'/etc/hostname'"):
        MedVQADataModule(jsonl.read, str(root)).setup()
