"""Bad input names the file and row and says how to fix it, or (on_bad_sample=skip) is skipped and counted."""

from __future__ import annotations

import json
from functools import partial

import pytest
from PIL import Image

from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.errors import DataError
from medvqa.data.formats import vqa_rad

ROW = {"qid": 1, "image_name": "a.jpg", "image_case_url": "https://medpix.nlm.nih.gov/case?id=c1",
       "image_organ": "HEAD", "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES",
       "question": "Is there a lesion?", "phrase_type": "freeform"}  # fmt: skip


def _release(root, rows, images=("a.jpg",)):
    (root / vqa_rad.IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", (32, 32), (90, 90, 90)).save(root / vqa_rad.IMAGE_DIR / name)
    (root / vqa_rad.ANNOTATION_FILE).write_text(json.dumps(rows))
    return root


def _dm(root, tiny, **kw):
    return MedVQADataModule(partial(vqa_rad.read), str(root), batch_size=2, val_fraction=0.0, test_fraction=0.0,
                            split_by="group", processor=tiny().processor, **kw)  # fmt: skip


def _rows(**changes):
    second = ROW | {
        "qid": 2,
        "image_name": "b.jpg",
        "image_case_url": "https://medpix.nlm.nih.gov/case?id=c2",
    }
    return [ROW, second | changes]


def test_malformed_json_names_the_file(tmp_path, tiny):
    root = _release(tmp_path, [])
    (root / vqa_rad.ANNOTATION_FILE).write_text('[{"qid": 1, "question": ')
    with pytest.raises(DataError, match=r"VQA_RAD Dataset Public\.json.*(JSON|json)"):
        _dm(root, tiny).setup()


def test_missing_image_names_file_and_row_or_is_skipped_and_counted(tmp_path, tiny):
    root = _release(tmp_path, _rows(), images=("a.jpg",))
    with pytest.raises(
        DataError, match=r"Public\.json row 1: image file not found.*b\.jpg.*on_bad_sample=skip"
    ):
        _dm(root, tiny).setup()
    dm = _dm(root, tiny, on_bad_sample="skip")
    dm.setup()
    assert [s.id for s in dm.splits["train"]] == ["vqa_rad-1"]
    assert dict(dm.bad.skipped) == {"image file not found": 1}


def test_empty_question_names_the_row(tmp_path, tiny):
    root = _release(tmp_path, _rows(question="  "), images=("a.jpg", "b.jpg"))
    with pytest.raises(DataError, match=r"Public\.json row 1: empty question"):
        _dm(root, tiny).setup()


def test_missing_required_key_names_key_and_row(tmp_path, tiny):
    rows = _rows()
    del rows[1]["answer"]
    root = _release(tmp_path, rows, images=("a.jpg", "b.jpg"))
    with pytest.raises(DataError, match=r"row 1.*answer"):
        _dm(root, tiny).setup()


def test_path_escaping_root_is_refused_even_when_skipping(tmp_path, tiny):
    (tmp_path / "secret.jpg").write_bytes(b"x")
    root = _release(tmp_path / "release", _rows(image_name="../../secret.jpg"), images=("a.jpg",))
    with pytest.raises(DataError, match=r"escapes data\.root"):
        _dm(root, tiny).setup()
    dm = _dm(root, tiny, on_bad_sample="skip")
    dm.setup()
    assert dm.bad.skipped["image path escapes data.root"] == 1
    assert all("secret" not in s.image for s in dm.splits["train"])


def test_corrupt_image_fails_at_load_with_its_path_or_is_dropped(tmp_path, tiny):
    root = _release(tmp_path, _rows(), images=("a.jpg",))
    (root / vqa_rad.IMAGE_DIR / "b.jpg").write_bytes(b"not a jpeg")
    dm = _dm(root, tiny)
    dm.setup()
    with pytest.raises(DataError, match=r"b\.jpg"):
        [dm.dataset("train")[i] for i in range(2)]
    dm = _dm(root, tiny, on_bad_sample="skip")
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["n_skipped"] == 1 and len(batch["meta"]["id"]) == 1


def test_unknown_on_bad_sample_value_is_a_config_error(tmp_path, tiny):
    with pytest.raises(ValueError, match="data.on_bad_sample='ignore'"):
        _dm(tmp_path, tiny, on_bad_sample="ignore")


def test_decompression_bomb_sized_image_is_refused(tmp_path, tiny, monkeypatch):
    import medvqa.data.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 32 * 32 - 1)  # the fixture's 32x32 images are "too big"
    root = _release(tmp_path, [ROW])
    dm = _dm(root, tiny)
    dm.setup()
    with pytest.raises(DataError, match=r"a\.jpg.*32x32 pixels is over the 1023 limit"):
        dm.dataset("train")[0]
