"""MedPix 2.0 (`CHILab1/MedPix-2.0`, folder `MedPix-2-0/`): `Descriptions.json` (one object per image),
`Case_topic.json` (one per case) and `images/<image>.png`. Not a QA set: questions are made from fields.
data.root may be the cloned repository or its `MedPix-2-0/` folder.

Questions per image (`questions`, any subset, in this order):
  modality     "Which imaging modality was used?"        <- Type (CT / MR -> MRI)          open
  modality_yn  "Is this a CT image?" / "... an MRI ...?"  <- Type, the asked modality drawn  closed
               with a seeded coin per image, so yes and no are balanced
  plane        "In which plane was this image taken?"    <- Description.Plane, mapped onto  open
               vocab.plane (Transverse -> axial); values that are not a plane (NOS - Not specified,
               Other View (see caption), Photograph, Gross Pathology, Drawing, Multiple or Montage,
               3D Reconstruction) ask no plane question
  location     "Which body region is shown?"             <- Location Category               open
  caption      "Describe the findings in this image."    <- Description.Caption             open
  findings     "Describe the findings of this case."     <- Case_topic Case.Findings        open
A question whose field is missing or empty is not asked. The case diagnosis (and the case/topic titles,
which often name it) is never read from Case_topic.json. Captions do name it (145 of 2,050 quote the
case title or diagnosis verbatim: "...cysts in this Horseshoe kidney."), so `sample.caption` is set on the
caption question's record only, where the caption is the answer: a `prompt_template` using `{caption}`
gives the other questions an empty caption, never the diagnosis.

Split: the official case split `splitted_dataset/data_{train,dev,test}.jsonl` when present, otherwise
none here and the splitter carves val/test grouped by `U_id` (the patient/case), seeded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats import vocab
from medvqa.data.formats.common import accepts_parent, has_keys, load_json_list, text
from medvqa.data.sample import VQASample

DESCRIPTIONS = "Descriptions.json"
CASES = "Case_topic.json"
IMAGE_DIR = "images"
SPLIT_DIR = "splitted_dataset"
OFFICIAL = {"train": "train", "dev": "val", "test": "test"}
MODALITIES = {"CT": "CT", "MR": "MRI", "MRI": "MRI"}
QUESTIONS = ("modality", "modality_yn", "plane", "location", "caption", "findings")
MISSING = {"", "n/a", "na", "null", "none", "unknown"}
HINT = (
    "Download MedPix 2.0 (github.com/CHILab1/MedPix-2.0 or HF 'CHILab1/MedPix-2.0') and point data.root at "
    "the clone or its MedPix-2-0/ folder (Descriptions.json, Case_topic.json, images/)."
)


@accepts_parent(DESCRIPTIONS, HINT)
def read(
    root: str | Path,
    bad: BadSamples | None = None,
    questions: list[str] | tuple[str, ...] = ("modality", "modality_yn", "plane", "location", "caption"),
    seed: int = 0,
) -> list[VQASample]:
    root, bad = Path(root), bad or BadSamples()
    unknown = sorted(set(questions) - set(QUESTIONS))
    if unknown:
        raise DataError(f"data.reader.questions: unknown {unknown}; choose from {list(QUESTIONS)}")
    if not (root / DESCRIPTIONS).is_file():
        raise DataError(f"data.root={root} has no {DESCRIPTIONS}. {HINT}")
    findings = _case_findings(root, bad) if "findings" in questions else {}
    splits = _official_splits(root)
    samples = []
    for i, row in enumerate(load_json_list(root / DESCRIPTIONS, HINT)):
        where = f"{root / DESCRIPTIONS} row {i}"
        if not has_keys(row, ("U_id", "image", "Type"), where, bad):
            continue
        fields = _fields(row, findings.get(text(row["U_id"]), ""))
        split = splits.get(fields["case"], "train")
        for n, (kind, question, answer, answer_type) in enumerate(_questions(fields, questions, seed)):
            samples.append(
                _sample(fields, kind, question, answer, answer_type, split, f"{where} question {n}")
            )
    return samples


def _fields(row: dict, findings: str) -> dict[str, Any]:
    desc = row.get("Description") if isinstance(row.get("Description"), dict) else {}
    return {
        "case": text(row["U_id"]),
        "image": text(row["image"]),
        "modality": MODALITIES.get(text(row["Type"]).upper(), text(row["Type"])),
        "modality_detail": _value(desc.get("Modality")),
        "plane": vocab.plane(_value(desc.get("Plane"))),  # '' for values that are not a plane
        "plane_raw": _value(desc.get("Plane")),
        "location": _value(row.get("Location")),
        "region": _value(row.get("Location Category")),
        "caption": _value(desc.get("Caption")),
        "findings": _value(findings),
    }


def _value(v: Any) -> str:
    v = text(v)
    return "" if v.lower() in MISSING else v


def _questions(f: dict[str, Any], wanted, seed: int) -> list[tuple[str, str, str, str]]:
    """(kind, question, answer, answer_type) for one image, in `wanted` order, skipping missing fields."""
    out = []
    for kind in wanted:
        if kind == "modality" and f["modality"]:
            out.append((kind, "Which imaging modality was used for this image?", f["modality"], "open"))
        elif kind == "modality_yn" and f["modality"] in ("CT", "MRI"):
            asked = f["modality"] if _coin(f["image"], seed) else {"CT": "MRI", "MRI": "CT"}[f["modality"]]
            article = "an" if asked == "MRI" else "a"
            answer = "yes" if asked == f["modality"] else "no"
            out.append((kind, f"Is this {article} {asked} image?", answer, "closed"))
        elif kind == "plane" and f["plane"]:
            out.append((kind, "In which plane was this image taken?", f["plane"], "open"))
        elif kind == "location" and f["region"]:
            out.append((kind, "Which body region is shown in this image?", f["region"], "open"))
        elif kind == "caption" and f["caption"]:
            out.append((kind, "Describe the findings in this image.", f["caption"], "open"))
        elif kind == "findings" and f["findings"]:
            out.append((kind, "Describe the imaging findings of this case.", f["findings"], "open"))
    return out


def _coin(image: str, seed: int) -> bool:
    """A fair coin per image, fixed by (seed, image name) whatever the row order."""
    return hashlib.sha1(f"{seed}:{image}".encode()).digest()[0] % 2 == 0


QUESTION_TYPES = {"modality": "MODALITY", "modality_yn": "MODALITY", "plane": "PLANE", "location": "ORGAN",
                  "caption": "CAPTION", "findings": "FINDINGS"}  # fmt: skip


def _sample(
    f: dict[str, Any], kind: str, question: str, answer: str, answer_type: str, split: str, where: str
):
    return VQASample(
        id=f"medpix-{f['image']}-{kind}",
        image=f"{IMAGE_DIR}/{f['image']}.png",
        question=question,
        answer=answer,
        answer_type=answer_type,
        question_type=QUESTION_TYPES[kind],
        modality=f["modality"],
        plane=f["plane"],
        organ=f["region"].lower(),
        caption=f["caption"] if kind == "caption" else "",  # captions quote the diagnosis: see above
        patient_id=f["case"],
        split=split,
        source="medpix",
        origin=where,
        extra={
            "location": f["location"],
            "modality_detail": f["modality_detail"],
            "plane_raw": f["plane_raw"],
            "kind": kind,
        },
    )


def _case_findings(root: Path, bad: BadSamples) -> dict[str, str]:
    """U_id -> Case.Findings. Only Findings is read from the case: never its diagnosis or titles."""
    out = {}
    for i, case in enumerate(load_json_list(root / CASES, HINT)):
        if has_keys(case, ("U_id", "Case"), f"{root / CASES} row {i}", bad) and isinstance(
            case["Case"], dict
        ):
            out[text(case["U_id"])] = text(case["Case"].get("Findings"))
    return out


def _official_splits(root: Path) -> dict[str, str]:
    """U_id -> split from `splitted_dataset/data_{train,dev,test}.jsonl` (one case per line); {} if absent."""
    folder = root / SPLIT_DIR
    out: dict[str, str] = {}
    for name, split in OFFICIAL.items():
        path = folder / f"data_{name}.jsonl"
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                out[text(json.loads(line)["U_id"])] = split
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path} line {n + 1}: not a case object with a U_id ({e}). {HINT}") from e
    return out
