"""SLAKE (English subset): `train.json`, `validate.json` (or the HF copy's `validation.json`), `test.json`
and `imgs/xmlabN/source.jpg`. The files mix English and Chinese rows; only `q_lang == "en"` is kept."""

from __future__ import annotations

from pathlib import Path

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats.common import accepts_parent, has_keys, load_json_list, text
from medvqa.data.sample import VQASample

FILES = {"train": ("train.json",), "val": ("validate.json", "validation.json"), "test": ("test.json",)}
IMAGE_DIR = "imgs"
REQUIRED = ("img_id", "img_name", "question", "answer", "q_lang", "answer_type")
# SLAKE's content types in the VQA-RAD question-type vocabulary, so filters and curricula work across sets
CONTENT_TYPES = {
    "modality": "MODALITY", "plane": "PLANE", "organ": "ORGAN", "abnormal": "ABN", "position": "POS",
    "color": "COLOR", "size": "SIZE", "quantity": "COUNT", "shape": "ATTRIB", "kg": "KG",
}  # fmt: skip
HINT = (
    "Download SLAKE (https://www.med-vqa.com/slake/, or the HF copy 'BoKelvin/SLAKE') and point data.root "
    "at the folder holding train.json, validate.json, test.json and imgs/."
)


@accepts_parent("train.json", HINT)  # the release zip unpacks to Slake1.0/
def read(root: str | Path, bad: BadSamples | None = None, language: str = "en") -> list[VQASample]:
    """All English rows of the three split files; `language` picks another `q_lang` (e.g. 'zh')."""
    root, bad = Path(root), bad or BadSamples()
    samples: list[VQASample] = []
    for split, names in FILES.items():
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            if split == "train":
                raise DataError(f"data.root={root} has no train.json. {HINT}")
            continue  # a missing val/test file is carved from train by the splitter
        for i, row in enumerate(load_json_list(path, HINT)):
            where = f"{path} row {i}"
            if has_keys(row, REQUIRED, where, bad) and text(row["q_lang"]) == language:
                samples.append(_sample(row, split, path, i))
    return samples


def _sample(row: dict, split: str, path: Path, i: int) -> VQASample:
    content = text(row.get("content_type"))
    return VQASample(
        id=f"slake-{split}-{text(row.get('qid')) or i}",
        image=f"{IMAGE_DIR}/{text(row['img_name'])}",
        question=text(row["question"]),
        answer=text(row["answer"]),
        answer_type="closed" if text(row["answer_type"]).upper() == "CLOSED" else "open",
        question_type=CONTENT_TYPES.get(content.lower(), content.upper()),
        modality=text(row.get("modality")),
        organ=text(row.get("location")).lower(),
        split=split,
        source="slake",
        origin=f"{path} row {i}",
        extra={
            "img_id": text(row["img_id"]),
            "content_type": content,
            "base_type": text(row.get("base_type")),
        },
    )
