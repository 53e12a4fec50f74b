"""VQA-RAD in the three layouts people have:
- OSF (`VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`): test = `phrase_type` starting `test`;
  patient = the case id in `image_case_url` (14-key rows; the 8-key copies group by image).
- GitHub / MICCAI19-MedVQA (`trainset.json` + `testset.json` + `images/`, often `answer_all_list.json`):
  8 keys per row; the split is the file (test rows say `freeform` / `para`); patient = the image.
- Hugging Face parquet (`flaviagiammarino/vqa-rad`: `*.parquet` with image bytes, question, answer).
The layout is found by its file names and named in one log line.

Per-image `modality` / `plane` come from the image's open MODALITY / PLANE answers, mapped onto the
vocabulary of `medvqa/data/formats/vocab.py` (raw answer in `extra`); question types have the release's
typos corrected (ATRIB -> ATTRIB, PRSE -> PRES)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats import vocab
from medvqa.data.formats.common import (
    accepts_parent,
    has_keys,
    load_json_list,
    parquet_shards,
    read_qa_parquet,
    text,
)
from medvqa.data.sample import VQASample

log = logging.getLogger(__name__)
ANNOTATION_FILE = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
GITHUB_FILES = {"train": "trainset.json", "test": "testset.json"}
GITHUB_IMAGE_DIR = "images"
REQUIRED = ("qid", "image_name", "question", "answer", "answer_type", "question_type", "phrase_type")
ORGANS = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
HINT = (
    "Download VQA-RAD from OSF (https://osf.io/89kps/), the parquet copy 'flaviagiammarino/vqa-rad', or use "
    "a copy in the MICCAI19-MedVQA layout (trainset.json, testset.json, images/), and point data.root at "
    "the folder that holds it."
)


def _holds_release(folder: Path) -> bool:
    return (
        (folder / ANNOTATION_FILE).is_file()
        or (folder / GITHUB_FILES["train"]).is_file()
        or any(folder.rglob("*.parquet"))
    )


# the OSF zip unpacks to a folder holding the JSON and the image folder; a GitHub clone holds data_RAD/
@accepts_parent(f"'{ANNOTATION_FILE}' or trainset.json", HINT, _holds_release)
def read(root: str | Path, bad: BadSamples | None = None) -> list[VQASample]:
    root, bad = Path(root), bad or BadSamples()
    if (root / ANNOTATION_FILE).is_file():
        log.info("VQA-RAD: reading the OSF layout (%s)", root / ANNOTATION_FILE)
        return read_osf(root, bad)
    if (root / GITHUB_FILES["train"]).is_file():
        log.info("VQA-RAD: reading the GitHub (MICCAI19-MedVQA) layout (%s)", root / GITHUB_FILES["train"])
        return read_github(root, bad)
    if any(root.rglob("*.parquet")):
        shards = parquet_shards(root, HINT)
        log.info("VQA-RAD: reading the parquet copy (%d shards under %s)", len(shards), root)
        return read_parquet(root, shards, bad)
    raise DataError(
        f"data.root={root} has no '{ANNOTATION_FILE}', no trainset.json and no *.parquet files. {HINT}"
    )


def read_osf(root: Path, bad: BadSamples) -> list[VQASample]:
    path = root / ANNOTATION_FILE
    samples = []
    for i, row in enumerate(load_json_list(path, HINT)):
        where = f"{path} row {i}"
        if has_keys(row, REQUIRED, where, bad):
            split = "test" if text(row["phrase_type"]).lower().startswith("test") else "train"
            samples.append(_sample(row, f"{IMAGE_DIR}/{text(row['image_name'])}", split, where))
    _propagate_image_attributes(samples)
    return samples


def read_github(root: Path, bad: BadSamples) -> list[VQASample]:
    """trainset.json and testset.json: the file is the split; no case URL, so the image is the group."""
    samples = []
    for split, name in GITHUB_FILES.items():
        path = root / name
        if not path.is_file():
            raise DataError(
                f"data.root={root} has trainset.json but no {name}; the copy is incomplete. {HINT}"
            )
        for i, row in enumerate(load_json_list(path, HINT)):
            where = f"{path} row {i}"
            if has_keys(row, REQUIRED, where, bad):
                samples.append(_sample(row, f"{GITHUB_IMAGE_DIR}/{text(row['image_name'])}", split, where))
    _propagate_image_attributes(samples)
    return samples


def _sample(row: dict, image: str, split: str, where: str) -> VQASample:
    organ = text(row.get("image_organ"))
    return VQASample(
        id=f"vqa_rad-{text(row['qid'])}",
        image=image,
        question=text(row["question"]),
        answer=text(row["answer"]),  # numbers cast to text
        answer_type="closed" if text(row["answer_type"]).upper() == "CLOSED" else "open",  # "CLOSED " too
        question_type=vocab.question_type(text(row["question_type"])),
        organ=ORGANS.get(organ.upper(), organ.lower()),
        patient_id=_case_id(row.get("image_case_url")),
        split=split,
        source="vqa_rad",
        origin=where,
        extra={"phrase_type": text(row["phrase_type"])},
    )


def _case_id(url) -> str:
    """The MedPix case behind an image (`...case?id=X`): several images of one patient share it."""
    if not url or not isinstance(url, str):
        return ""
    return parse_qs(urlparse(url).query).get("id", [""])[0]


def _propagate_image_attributes(samples: list[VQASample]) -> None:
    """VQA-RAD has no modality/plane fields, but open MODALITY / PLANE questions answer them per image.
    Each answer is mapped onto the vocabulary (a contrast such as "with contrast" names no modality and
    is not counted); the most common name goes on every question of that image (rewards and filters use
    it), the most common raw answer into `extra` (`modality_raw`, `plane_raw`)."""
    mapping = {"modality": vocab.modality, "plane": vocab.plane}
    found: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for s in samples:
        kind = {"MODALITY": "modality", "PLANE": "plane"}.get(s.question_type)
        if kind and s.answer_type == "open" and s.answer:
            found[s.image][kind].update([s.answer.lower()])
            name = mapping[kind](s.answer)
            if name:
                found[s.image][f"{kind}_name"].update([name])
    for s in samples:
        attrs = found.get(s.image)
        if not attrs:
            continue
        for kind in mapping:
            if attrs[kind]:
                s.extra[f"{kind}_raw"] = attrs[kind].most_common(1)[0][0]
            if attrs[f"{kind}_name"] and not getattr(s, kind):
                setattr(s, kind, attrs[f"{kind}_name"].most_common(1)[0][0])


def read_parquet(root: Path, shards: list[Path], bad: BadSamples) -> list[VQASample]:
    """Rows keep (shard, row) pointers; the image bytes are only hashed (a digest: the same picture on many
    rows is one group), one batch at a time, so memory holds records, not pixels."""
    return read_qa_parquet(root, shards, "vqa_rad", HINT)
