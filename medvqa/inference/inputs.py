"""What `python -m medvqa.predict` answers: one image, a questions file, or every image in a folder.

    items = read_inputs(inputs="questions.jsonl", question=None, root=None, bad=bad, skipped=skipped)

A questions file (JSONL) holds one object per line: `image`, `question`, optional `id`, optional
`image_row` / `image_member` (a parquet row, a zip member). On the command line the user owns the files:
an absolute `image` path is taken as given (as ms-swift / LLaMA-Factory files and a user's own list of
`/data/scans/...` write them), a relative one is resolved against the file's folder. With `inputs_root=`
every path is resolved against that folder and must stay inside it (for files that come from others).
A folder gives every image under it (sorted, hidden files and files that are not images, like a
questions .jsonl beside the scans, left out) with one question. Rows that cannot be used (unparsable line,
no or empty question, an image path escaping inputs_root=, a missing file) go through `data.on_bad_sample`
here, before the model loads; images that turn out undecodable are the predictor's to report
(medvqa/inference/predictor.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from medvqa.data.errors import BadSamples, DataError, resolve_inside
from medvqa.data.pixels import is_dicom_file
from medvqa.inference.predictor import Item
from medvqa.io import is_binary, text_lines

# what a folder of inputs holds as images by name (the app's upload types, and GIF / WebP); other names are
# judged by content
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff", ".gif", ".webp")
# never an image, whatever PIL might guess from the first bytes
NOT_IMAGES = (".jsonl", ".json", ".txt", ".csv", ".md", ".yaml", ".yml", ".py", ".pdf", ".html")


def read_inputs(inputs: str, question: str | None, root: str | None, bad: BadSamples,
                skipped: list[dict[str, Any]]) -> list[Item]:  # fmt: skip
    """The items of `inputs` (a JSONL file, or a folder with `question`); bad rows raise (data.on_bad_sample
    =error) or are appended to `skipped` and counted in `bad`."""
    path = Path(inputs)
    if not path.exists():
        raise FileNotFoundError(
            f"inputs={inputs} does not exist: give a questions .jsonl file or a folder of images"
        )
    if path.is_dir():
        if not (question or "").strip():
            raise ValueError(
                f"inputs={inputs} is a folder: give the question to ask of every image, question=..."
            )
        return folder_items(path, question, bad, skipped)
    if question:
        raise ValueError(f"question= is for image= or inputs=<folder>; inputs={inputs} is a questions file, "
                         "whose every line gives its own question: drop question=")  # fmt: skip
    return file_items(path, Path(root) if root else None, bad, skipped)


def folder_items(folder: Path, question: str, bad: BadSamples, skipped: list[dict[str, Any]]) -> list[Item]:
    """Every non-hidden image under `folder`, sorted by relative path (its id), each with `question`. Files
    that are not images never stop the command: they are left out, named on one printed line, and with
    data.on_bad_sample=skip also listed in `skipped` (reason "not an image")."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    kept = {p for p in files if is_image(p)}
    if others := [p for p in files if p not in kept]:
        names = [str(p.relative_to(folder)) for p in others]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        print(f"inputs={folder}: left out {len(names)} files that are not images ({shown})")
    if bad.mode == "skip":
        skipped += [{"id": str(p.relative_to(folder)), "image": str(p), "question": question,
                     "where": f"inputs={folder} file {p.name}", "reason": "not an image"} for p in others]  # fmt: skip
    return [Item(str(p), question, str(p.relative_to(folder)), where=f"inputs={folder} file {p.name}")
            for p in files if p in kept]  # fmt: skip


def is_image(path: Path) -> bool:
    """An image by its name (IMAGE_SUFFIXES) or, for other names, by its content: DICOM's 'DICM' marker
    (CD / PACS exports have no extension) or a header PIL knows. A broken file named .jpg is an image
    (and then reported as undecodable); a .jsonl or .txt is not."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in NOT_IMAGES:
        return False
    if is_dicom_file(path):
        return True
    try:
        with Image.open(path):
            return True
    except Exception:  # PIL raises many types for what is not an image
        return False


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def file_items(path: Path, root: Path | None, bad: BadSamples, skipped: list[dict[str, Any]]) -> list[Item]:
    """The usable lines of the questions file `path`: image paths resolved inside `root` (inputs_root=),
    or, with no root, relative to the file's folder and absolute ones as given."""
    if is_binary(path):  # an image given as inputs=: the whole file is wrong, not one line
        raise ValueError(f"inputs={path} is not a questions file (it holds binary data, an image?): give a "
                         f"JSONL questions file, or image={path} question=... to ask about one image")  # fmt: skip
    items = []
    for n, line in text_lines(path):
        if line is not None and not line.strip():
            continue
        where = f"inputs={path} line {n}"
        try:
            if line is None:
                raise _BadLine({}, "not UTF-8 text", "Write the questions file as UTF-8 JSONL.")
            items.append(_line_item(line, n, path.parent, root, where))
        except _BadLine as e:
            bad.report(where, e.reason, e.fix)  # raises under on_bad_sample=error
            skipped.append({"id": e.row.get("id", str(n)), "image": str(e.row.get("image", "")),
                            "question": str(e.row.get("question", "")), "where": where, "reason": e.reason})  # fmt: skip
    return items


class _BadLine(Exception):
    def __init__(self, row: dict, reason: str, fix: str):
        super().__init__(reason)
        self.row, self.reason, self.fix = row, reason, fix


def _line_item(line: str, n: int, folder: Path, root: Path | None, where: str) -> Item:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine({}, "not a JSON object", f"Write one JSON object per line ({e}).") from None
    if not isinstance(row, dict):
        raise _BadLine({}, "not a JSON object", 'Write one {"image": ..., "question": ...} object per line.')
    if not str(row.get("question") or "").strip():
        raise _BadLine(row, "empty question", 'Give the line a non-empty "question".')
    if not row.get("image"):
        raise _BadLine(row, "no image", 'Give the line an "image" path.')
    if root is None:  # the user's own file: absolute paths as given, relative ones from its folder
        image = Path(os.path.normpath(folder / os.path.expanduser(str(row["image"]))))
    else:
        try:
            image = resolve_inside(root, str(row["image"]))
        except DataError:
            raise _BadLine(row, "image path escapes the inputs folder",
                           f"Image paths must stay inside inputs_root={root} (widen it, or drop it).") from None  # fmt: skip
    if not image.is_file():
        raise _BadLine(row, "image file not found", f"Expected {image}.")
    return Item(str(image), str(row["question"]), str(row.get("id", n)), _image_row(row),
                str(row.get("image_member") or ""), where)  # fmt: skip


def _image_row(row: dict) -> int | None:
    """The line's parquet row (`image_row`): a whole number, or a string of digits; None when absent."""
    value = row.get("image_row")
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _BadLine(row, "image_row must be an integer", f"Give the parquet row number, not {value!r}.")
