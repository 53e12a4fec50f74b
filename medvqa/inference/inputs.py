"""What `python -m medvqa.predict` answers: one image, a questions file, or every image in a folder.

    items = read_inputs(inputs="questions.jsonl", question=None, root=None, bad=bad, skipped=skipped)

A questions file (JSONL) holds one object per line: `image` (a path, relative to the file's folder or to
`inputs_root=`), `question`, optional `id`, optional `image_row` / `image_member` (a parquet row, a zip
member). A folder gives every file under it (sorted, hidden ones left out) with one question. Rows that
cannot be used (unparsable line, no or empty question, an image path escaping the folder, a missing file)
go through `data.on_bad_sample` here, before the model loads; images that turn out undecodable are the
predictor's to report (medvqa/inference/predictor.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples, DataError, resolve_inside
from medvqa.inference.predictor import Item
from medvqa.io import is_binary, text_lines


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
        return folder_items(path, question)
    if question:
        raise ValueError(f"question= is for image= or inputs=<folder>; inputs={inputs} is a questions file, "
                         "whose every line gives its own question: drop question=")  # fmt: skip
    return file_items(path, Path(root) if root else path.parent, bad, skipped)


def folder_items(folder: Path, question: str) -> list[Item]:
    """Every non-hidden file under `folder`, sorted by relative path (its id), each with `question`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    return [Item(str(p), question, str(p.relative_to(folder)), where=f"inputs={folder} file {p.name}")
            for p in files]  # fmt: skip


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def file_items(path: Path, root: Path, bad: BadSamples, skipped: list[dict[str, Any]]) -> list[Item]:
    """The usable lines of the questions file `path` (image paths resolved inside `root`)."""
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
            items.append(_line_item(line, n, root, where))
        except _BadLine as e:
            bad.report(where, e.reason, e.fix)  # raises under on_bad_sample=error
            skipped.append({"id": e.row.get("id", str(n)), "image": str(e.row.get("image", "")),
                            "question": str(e.row.get("question", "")), "where": where, "reason": e.reason})  # fmt: skip
    return items


class _BadLine(Exception):
    def __init__(self, row: dict, reason: str, fix: str):
        super().__init__(reason)
        self.row, self.reason, self.fix = row, reason, fix


def _line_item(line: str, n: int, root: Path, where: str) -> Item:
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
    try:
        image = resolve_inside(root, str(row["image"]))
    except DataError:
        raise _BadLine(row, "image path escapes the inputs folder",
                       f"Image paths must stay inside {root} (set inputs_root= to widen it).") from None  # fmt: skip
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
