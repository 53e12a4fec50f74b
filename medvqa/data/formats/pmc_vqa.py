"""PMC-VQA (`xmcmic/PMC-VQA`): `train.csv` / `test.csv` with `Figure_path, Question, Answer, Choice A..D,
Answer_label`, images in `images.zip` (read member by member, never unpacked) or an unpacked `images/`.

Every question is multiple choice: the prompt lists the choices (`A: ...` one per line); the target is
the letter (`answer_format=letter`) or the choice's text (`answer_format=text`). Choice cells carry their
letter (`"B:Focal uptake pattern"`); it is stripped and re-rendered. Figures of one article (the `PMC...`
prefix of the file name) usually show one patient, so they are one group for the splitter.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats.common import accepts_parent, split_from_name, text
from medvqa.data.sample import VQASample

LETTERS = ("A", "B", "C", "D")
REQUIRED = ("Figure_path", "Question", "Answer_label", *(f"Choice {x}" for x in LETTERS))
CHOICE_PREFIX = re.compile(r"^\s*[A-D]\s*[:.)]\s*")
HINT = (
    "Download PMC-VQA ('xmcmic/PMC-VQA' on Hugging Face: train.csv, test.csv, images.zip) and point "
    "data.root at the folder holding them."
)


@accepts_parent("train.csv", HINT, lambda folder: any(folder.glob("*.csv")))  # a clone nests PMC-VQA/
def read(
    root: str | Path,
    bad: BadSamples | None = None,
    files: list[str] | tuple[str, ...] = ("train.csv", "test.csv"),
    answer_format: str = "letter",
    archive: str = "images.zip",
    image_dir: str = "images",
    instruction: str = "Answer with the option's letter from the given choices.",
) -> list[VQASample]:
    """`instruction` ends the prompt when answers are letters (set '' to leave it out)."""
    root, bad = Path(root), bad or BadSamples()
    if answer_format not in ("letter", "text"):
        raise DataError(f"data.reader.answer_format={answer_format!r}; use 'letter' or 'text'")
    members = _archive_members(root / archive) if not (root / image_dir).is_dir() else None
    if members is None and not (root / image_dir).is_dir():
        raise DataError(f"data.root={root} has neither {archive} nor {image_dir}/. {HINT}")
    samples = []
    for name in files:
        path = root / name
        if not path.is_file():
            raise DataError(f"data.root={root} has no {name} (data.reader.files={list(files)}). {HINT}")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}. {HINT}")
            for i, row in enumerate(reader):
                where = f"{path} row {i + 2}"  # the line number a spreadsheet shows (header is line 1)
                sample = _sample(row, where, split_from_name(name), answer_format, instruction, bad)
                if sample is not None and _place_image(sample, root, archive, image_dir, members, where, bad):
                    samples.append(sample)
    return samples


def _sample(row: dict, where: str, split: str, answer_format: str, instruction: str, bad: BadSamples):
    choices = {x: CHOICE_PREFIX.sub("", text(row[f"Choice {x}"])) for x in LETTERS}
    label = text(row["Answer_label"]).upper()
    if label not in LETTERS or not choices[label]:
        bad.report(where, "Answer_label is not the letter of a given choice", "Expected one of A, B, C, D.")
        return None
    lines = [text(row["Question"])] + [f"{x}: {c}" for x, c in choices.items() if c]
    if answer_format == "letter" and instruction:
        lines.append(instruction)
    figure = text(row["Figure_path"])
    return VQASample(
        id=f"pmc_vqa-{split}-{where.rsplit(' ', 1)[-1]}",
        image=figure,
        question="\n".join(lines),
        answer=label if answer_format == "letter" else choices[label],
        answer_type="closed",
        question_type="CHOICE",
        patient_id=f"pmc-{figure.split('_', 1)[0]}",
        split=split,
        source="pmc_vqa",
        origin=where,
        extra={"choices": choices, "label": label, "answer_text": text(row.get("Answer"))},
    )


def _archive_members(path: Path) -> dict[str, str] | None:
    """File name -> member name in the archive (members may sit under a folder); None if no archive."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return {Path(m).name: m for m in archive.namelist() if not m.endswith("/")}
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a readable zip archive ({e}); download it again") from e


def _place_image(sample, root, archive, image_dir, members, where, bad) -> bool:
    """Point the sample at its image: a file under image_dir/, or a member of the archive."""
    name = sample.image
    if members is None:
        sample.image = f"{image_dir}/{name}"
        return True
    member = members.get(Path(name).name)
    if member is None:
        bad.report(where, f"image not in {archive}", f"{name!r} is not a member of {root / archive}.")
        return False
    sample.image, sample.image_member = archive, member
    return True
