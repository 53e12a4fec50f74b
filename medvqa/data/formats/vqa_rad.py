"""VQA-RAD: the OSF release (`VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`) or the parquet
redistribution (`flaviagiammarino/vqa-rad`: `*.parquet` with image bytes, question, answer)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats.common import (
    accepts_parent,
    has_keys,
    load_json_list,
    parquet_shards,
    read_qa_parquet,
    text,
)
from medvqa.data.sample import VQASample

ANNOTATION_FILE = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
REQUIRED = ("qid", "image_name", "question", "answer", "answer_type", "question_type", "phrase_type")
ORGANS = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
HINT = (
    "Download VQA-RAD from OSF (https://osf.io/89kps/) or the parquet copy 'flaviagiammarino/vqa-rad' "
    "and point data.root at the folder that holds it."
)


def _holds_release(folder: Path) -> bool:
    return (folder / ANNOTATION_FILE).is_file() or any(folder.rglob("*.parquet"))


# the OSF zip unpacks to a folder holding the JSON and the image folder
@accepts_parent(ANNOTATION_FILE, HINT, _holds_release)
def read(root: str | Path, bad: BadSamples | None = None) -> list[VQASample]:
    root, bad = Path(root), bad or BadSamples()
    if (root / ANNOTATION_FILE).is_file():
        return read_osf(root, bad)
    if any(root.rglob("*.parquet")):
        return read_parquet(root, parquet_shards(root, HINT), bad)
    raise DataError(f"data.root={root} has no '{ANNOTATION_FILE}' and no *.parquet files. {HINT}")


def read_osf(root: Path, bad: BadSamples) -> list[VQASample]:
    path = root / ANNOTATION_FILE
    samples = []
    for i, row in enumerate(load_json_list(path, HINT)):
        where = f"{path} row {i}"
        if not has_keys(row, REQUIRED, where, bad):
            continue
        samples.append(
            VQASample(
                id=f"vqa_rad-{text(row['qid'])}",
                image=f"{IMAGE_DIR}/{text(row['image_name'])}",
                question=text(row["question"]),
                answer=text(row["answer"]),
                answer_type="closed" if text(row["answer_type"]).upper() == "CLOSED" else "open",
                question_type=text(row["question_type"]).upper(),
                organ=ORGANS.get(text(row.get("image_organ")).upper(), text(row.get("image_organ")).lower()),
                patient_id=_case_id(row.get("image_case_url")),
                split="test" if text(row["phrase_type"]).lower().startswith("test") else "train",
                source="vqa_rad",
                origin=where,
                extra={"phrase_type": text(row["phrase_type"])},
            )
        )
    _propagate_image_attributes(samples)
    return samples


def _case_id(url) -> str:
    """The MedPix case behind an image (`...case?id=X`): several images of one patient share it."""
    if not url or not isinstance(url, str):
        return ""
    return parse_qs(urlparse(url).query).get("id", [""])[0]


def _propagate_image_attributes(samples: list[VQASample]) -> None:
    """VQA-RAD has no modality/plane fields, but open MODALITY / PLANE questions answer them per image.
    Copy the most common such answer onto every question of that image (rewards and filters use it)."""
    found: dict[str, dict[str, Counter]] = defaultdict(lambda: {"modality": Counter(), "plane": Counter()})
    for s in samples:
        kind = {"MODALITY": "modality", "PLANE": "plane"}.get(s.question_type)
        if kind and s.answer_type == "open" and s.answer:
            found[s.image][kind][s.answer.lower()] += 1
    for s in samples:
        attrs = found.get(s.image)
        if attrs:
            s.modality = s.modality or next(iter(attrs["modality"].most_common(1)), ("",))[0]
            s.plane = s.plane or next(iter(attrs["plane"].most_common(1)), ("",))[0]


def read_parquet(root: Path, shards: list[Path], bad: BadSamples) -> list[VQASample]:
    """Rows keep (shard, row) pointers; the image bytes are only hashed (a digest: the same picture on many
    rows is one group), one batch at a time, so memory holds records, not pixels."""
    return read_qa_parquet(root, shards, "vqa_rad", HINT)
