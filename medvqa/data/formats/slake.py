"""SLAKE (English subset): `train.json`, `validate.json` (or the HF copy's `validation.json`), `test.json`
and `imgs/xmlabN/source.jpg`. The files mix English and Chinese rows; only `q_lang == "en"` is kept.

Known quirks of the release are handled here, whatever `data.on_bad_sample` says (the user cannot fix
them): SLAKE 1.0's train.json row 1622 (qid 1622, xmlab281, "Does the picture contain liver?") has an
empty answer; it is skipped, counted in run_info.json `skipped_while_reading` and named in one log line."""

from __future__ import annotations

from pathlib import Path

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats import vocab
from medvqa.data.formats.common import accepts_parent, has_keys, load_json_list, text
from medvqa.data.sample import VQASample

FILES = {"train": ("train.json",), "val": ("validate.json", "validation.json"), "test": ("test.json",)}
IMAGE_DIR = "imgs"
REQUIRED = ("img_id", "img_name", "question", "answer", "q_lang", "answer_type")
# SLAKE 1.0's ten content types in the VQA-RAD question-type vocabulary, so filters and curricula work
# across sets (`question_type: ABN` keeps SLAKE's Abnormality questions as it keeps VQA-RAD's ABN ones)
CONTENT_TYPES = {
    "abnormality": "ABN", "color": "COLOR", "kg": "KG", "modality": "MODALITY", "organ": "ORGAN",
    "plane": "PLANE", "position": "POS", "quantity": "COUNT", "shape": "ATTRIB", "size": "SIZE",
}  # fmt: skip
# (file, qid, img_name) -> what is wrong: rows the release ships broken, skipped and counted by name
KNOWN_QUIRKS = {("train.json", "1622", "xmlab281/source.jpg"): "empty answer"}
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
            if not (has_keys(row, REQUIRED, where, bad) and text(row["q_lang"]) == language):
                continue
            quirk = _known_quirk(path, row)
            if quirk:
                bad.known(
                    f"{where} (qid {text(row.get('qid'))}, {text(row['img_name'])})", quirk, "SLAKE 1.0"
                )
                continue
            samples.append(_sample(row, split, path, i))
    return samples


def _known_quirk(path: Path, row: dict) -> str:
    """What is wrong with `row` when it is one the release is known to ship broken (and still is); ''."""
    quirk = KNOWN_QUIRKS.get((path.name, text(row.get("qid")), text(row["img_name"])), "")
    return quirk if quirk == "empty answer" and not text(row["answer"]) else ""


def _sample(row: dict, split: str, path: Path, i: int) -> VQASample:
    content = text(row.get("content_type"))
    modality = text(row.get("modality"))
    return VQASample(
        id=f"slake-{split}-{text(row.get('qid')) or i}",
        image=f"{IMAGE_DIR}/{text(row['img_name'])}",
        question=text(row["question"]),
        answer=text(row["answer"]),
        answer_type="closed" if text(row["answer_type"]).upper() == "CLOSED" else "open",
        question_type=CONTENT_TYPES.get(content.lower(), content.upper()),
        modality=vocab.modality(modality) or modality,
        organ=text(row.get("location")).lower(),
        split=split,
        source="slake",
        origin=f"{path} row {i}",
        extra={
            "img_id": text(row["img_id"]),
            "content_type": content,
            "base_type": text(row.get("base_type")),
            "modality_raw": modality,
        },
    )
