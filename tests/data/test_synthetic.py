"""The synthetic dataset: deterministic, in the VQA-RAD format, balanced, and answerable only from pixels."""

import hashlib
import json
from collections import Counter

import numpy as np
from PIL import Image

from medvqa.data import synthetic
from medvqa.data.formats import synthetic as synthetic_reader


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synthetic.generate(tmp_path / "a", n_patients=6, seed=1)
    b = synthetic.generate(tmp_path / "b", n_patients=6, seed=1)
    c = synthetic.generate(tmp_path / "c", n_patients=6, seed=2)
    assert _digest(a) == _digest(b) != _digest(c)


def test_written_in_vqa_rad_osf_format(tmp_path):
    root = synthetic.generate(tmp_path, n_patients=6)
    rows = json.loads((root / "VQA_RAD Dataset Public.json").read_text())
    keys = {"qid", "phrase_type", "qid_linked_id", "image_case_url", "image_name", "image_organ", "evaluation",
            "question", "question_rephrase", "question_relation", "question_frame", "question_type", "answer",
            "answer_type"}  # fmt: skip
    assert all(set(r) == keys for r in rows)
    assert {r["answer_type"] for r in rows} == {"CLOSED", "OPEN"}
    assert all((root / "VQA_RAD Image Folder" / r["image_name"]).is_file() for r in rows)


def test_closed_answers_balanced_and_test_patients_held_out(tmp_path):
    samples = synthetic_reader.read(tmp_path, n_patients=60)
    closed = Counter(s.answer for s in samples if s.answer_type == "closed")
    assert set(closed) == {"yes", "no"} and abs(closed["yes"] - closed["no"]) < 0.15 * sum(closed.values())
    train = {s.patient_id for s in samples if s.split == "train"}
    test = {s.patient_id for s in samples if s.split == "test"}
    assert test and train and not (train & test)


def test_factors_are_visible_in_pixels():
    """Each hidden factor changes the picture: modality by intensity, lesion by a bright disc, side by where."""
    rng = np.random.default_rng(0)
    base = dict(name="x", patient="p", plane="axial", organ="head")
    ct = synthetic.render(synthetic.Scan(modality="CT", lesion=False, side="", **base), 112, rng)
    mri = synthetic.render(synthetic.Scan(modality="MRI", lesion=False, side="", **base), 112, rng)
    assert abs(float(ct.mean()) - float(mri.mean())) > 10
    left = synthetic.render(synthetic.Scan(modality="CT", lesion=True, side="left", **base), 112, rng)
    right = synthetic.render(synthetic.Scan(modality="CT", lesion=True, side="right", **base), 112, rng)
    # radiological convention: the patient's left is on the image's right
    assert (left[:, 56:] > 250).sum() > (left[:, :56] > 250).sum()
    assert (right[:, :56] > 250).sum() > (right[:, 56:] > 250).sum()
    assert (ct > 250).sum() < (left > 250).sum()


def test_reader_carries_caption_and_factors(tmp_path):
    s = synthetic_reader.read(tmp_path, n_patients=4)[0]
    assert s.source == "synthetic" and s.caption and s.modality in synthetic.MODALITIES
    assert (tmp_path / s.image).is_file()
    assert Image.open(tmp_path / s.image).size == (112, 112)
