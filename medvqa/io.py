"""Writing run outputs so that a crash never leaves half a file: write to a temporary name, then rename."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def text_lines(path: Path) -> list[tuple[int, str | None]]:
    """(line number, text) for each line of `path` read as UTF-8; text None for a line that is not UTF-8
    (a binary file, another encoding), so a reader can name that line instead of raising
    UnicodeDecodeError from deep inside."""
    out: list[tuple[int, str | None]] = []
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), start=1):
        try:
            out.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((number, None))
    return out


def is_binary(path: Path, head: int = 8192) -> bool:
    """True when the first `head` bytes of `path` hold a NUL byte: an image or other binary, not text."""
    with open(path, "rb") as f:
        return b"\x00" in f.read(head)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def save_adapter(model, path: Path, state_dict: dict[str, Any] | None = None) -> None:
    """peft `save_pretrained` into a sibling temp folder, then swap it in (loadable with PeftModel.from_pretrained).
    `state_dict` (the peft model's keys) replaces the model's own weights, e.g. when they are FSDP shards.
    Only the trained adapter is saved, never the frozen DPO/GRPO reference copy (models/peft.py)."""
    from medvqa.models.peft import trained_adapters

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    kwargs = {"state_dict": state_dict} if state_dict is not None else {}
    model.save_pretrained(str(tmp), selected_adapters=trained_adapters(model), **kwargs)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
