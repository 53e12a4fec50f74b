"""Small helpers shared by the readers: loading JSON with a clear error, and required keys per row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples, DataError


def load_json_list(path: Path, hint: str) -> list[Any]:
    """A JSON file that must hold a list; errors name the file, the position and how to get the file."""
    if not path.is_file():
        raise DataError(f"{path} not found. {hint}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}. {hint}") from e
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, found {type(rows).__name__}. {hint}")
    return rows


def has_keys(row: Any, keys: tuple[str, ...], where: str, bad: BadSamples) -> bool:
    """True when `row` is an object with all `keys`; otherwise reports a bad row and returns False."""
    if not isinstance(row, dict):
        bad.report(where, f"row is a {type(row).__name__}, not an object")
        return False
    missing = [k for k in keys if k not in row]
    if missing:
        bad.report(where, f"missing key(s) {', '.join(missing)}", "Check the file is the original release.")
        return False
    return True


def text(value: Any) -> str:
    """Release fields are not always strings (VQA-RAD has numeric answers): cast, strip, None -> ''."""
    return "" if value is None else str(value).strip()
