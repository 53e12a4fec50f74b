"""Small helpers shared by the readers: the release folder under data.root, JSON and parquet with clear
errors, required keys per row, the split a file name declares, and picture identities for parquet images."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.sample import VQASample, infer_answer_type

log = logging.getLogger(__name__)


def existing_root(root: Path, hint: str) -> Path:
    """`root`, or a DataError saying that it does not exist (before any reader's file-level message)."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.root={root} {what}; {hint}")
    return root


def release_folder(root: Path, what: str, hint: str, holds: Callable[[Path], bool] | None = None) -> Path:
    """The folder holding the release: `root` when it holds `what`, else the one folder directly inside
    it that does (a git clone or an unpacked zip nests the release one level down), logged. With no such
    folder, `root` (the reader's own check then says what is missing); with several, a DataError."""
    holds = holds or (lambda folder: (folder / what).exists())
    if holds(existing_root(root, hint)):
        return root
    found = [child for child in sorted(root.iterdir()) if child.is_dir() and holds(child)]
    if len(found) > 1:
        names = ", ".join(child.name for child in found)
        raise DataError(f"data.root={root} has no {what}, and {len(found)} folders in it do ({names}); "
                        "point data.root at one of them")  # fmt: skip
    if found:
        log.info("data.root=%s has no %s: reading the release in %s", root, what, found[0])
        return found[0]
    return root


def accepts_parent(what: str, hint: str, holds: Callable[[Path], bool] | None = None):
    """Decorates a reader `read(root, ...)` so data.root may also be the folder above the release (see
    `release_folder`). Image paths come back relative to data.root, as the datamodule resolves them."""

    def wrap(read: Callable[..., list[VQASample]]) -> Callable[..., list[VQASample]]:
        @functools.wraps(read)
        def reader(root: str | Path, *args, **kwargs) -> list[VQASample]:
            root = Path(root)
            folder = release_folder(root, what, hint, holds)
            samples = read(folder, *args, **kwargs)
            if folder != root:
                for s in samples:
                    s.image = f"{folder.name}/{s.image}"
            return samples

        return reader

    return wrap


def load_json_list(path: Path, hint: str) -> list[Any]:
    """A JSON file that must hold a list; errors name the file, the position and how to get the file."""
    if not path.is_file():
        raise DataError(f"{path} not found. {hint}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}. {hint}"
        ) from e
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


def split_from_name(name: str) -> str:
    """The split a release file's name declares (`train-0000.parquet`, `validation.json`, `data_dev.jsonl`);
    'train' when it names none."""
    words = set(re.split(r"[^a-z]+", Path(name).name.lower()))
    if "test" in words:
        return "test"
    if words & {"val", "valid", "validate", "validation", "dev"}:
        return "val"
    return "train"


def parquet_shards(root: Path, hint: str) -> list[Path]:
    existing_root(root, hint)
    shards = sorted(root.rglob("*.parquet"))
    if not shards:
        raise DataError(f"data.root={root} has no *.parquet files. {hint}")
    return shards


def parquet_columns(shard: Path, required: tuple[str, ...], hint: str) -> list[str]:
    """The shard's column names; a DataError naming the file when a required column is missing."""
    columns = pq.ParquetFile(shard).schema_arrow.names
    missing = sorted(set(required) - set(columns))
    if missing:
        raise DataError(f"{shard}: missing column(s) {missing}; found {columns}. {hint}")
    return columns


def parquet_rows(
    shard: Path, columns: list[str], batch_size: int = 256
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, {column: value}) one record batch at a time, so memory holds one batch, not the file.
    An `image` column (struct of bytes + path) is reduced to a digest of its bytes: the picture's identity
    for splitting, without keeping the bytes."""
    row = 0
    for batch in pq.ParquetFile(shard).iter_batches(batch_size=batch_size, columns=columns):
        values = {name: batch.column(name).to_pylist() for name in batch.schema.names if name != "image"}
        if "image" in batch.schema.names:
            values["image"] = _digests(batch.column("image"))
        for i in range(batch.num_rows):
            yield row, {name: column[i] for name, column in values.items()}
            row += 1
    pa.default_memory_pool().release_unused()  # hand the shard's decoded pages back to the OS


def _digests(column: pa.Array) -> list[str]:
    """Digests straight from Arrow's buffers: copying each image into a Python bytes object first would
    leave the process heap holding about the file's size after the copies are freed (glibc keeps them)."""
    data = column.field("bytes") if pa.types.is_struct(column.type) else column
    return [
        hashlib.sha1(v.as_buffer()).hexdigest()[:16] if v.is_valid and len(v.as_buffer()) else ""
        for v in data
    ]


def image_digest(cell: Any) -> str:
    """A short content hash of an encoded image (a parquet `image` struct or raw bytes); '' when empty.
    The same picture repeated on many rows gets one digest, so it is one group for the splitter."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    return hashlib.sha1(data).hexdigest()[:16] if data else ""


def read_qa_parquet(
    root: Path, shards: list[Path], source: str, hint: str, image_id_prefix: str = "", **fields
):
    """Image / question / answer parquet shards (the Hugging Face copies of VQA-RAD and PathVQA) as records:
    one per row, pointing at (shard, row), split from the file name, closed = a yes/no answer. `fields`
    are set on every record (e.g. modality="pathology")."""
    samples = []
    for shard in shards:
        parquet_columns(shard, ("image", "question", "answer"), hint)
        split = split_from_name(shard.name)
        for row, cells in parquet_rows(shard, ["image", "question", "answer"]):
            answer = text(cells["answer"])
            samples.append(
                VQASample(
                    id=f"{source}-{shard.stem}-{row}",
                    image=str(shard.relative_to(root)),
                    image_row=row,
                    image_id=f"{image_id_prefix}{cells['image']}" if cells["image"] else "",
                    question=text(cells["question"]),
                    answer=answer,
                    answer_type=infer_answer_type(answer),
                    split=split,
                    source=source,
                    origin=f"{shard} row {row}",
                    **fields,
                )
            )
    return samples
