"""Your own data: JSON Lines files under `data.root`, one question per line, in either of two shapes.

Plain (medvqa's own):
    {"image": "scans/p001_ct.dcm", "question": "Is there a fracture?", "answer": "no",
     "answer_type": "closed", "patient_id": "p001", "split": "train", "modality": "CT", "organ": "head"}
  Required: image, question, answer. Optional: id, answer_type (closed|open; default: closed for yes/no
  answers), question_type, modality, plane, organ, caption, patient_id, split (train|val|test). Any other
  key is kept in `sample.extra` (so `data.filters.<key>` can select on it).
Chat (ms-swift style):
    {"messages": [{"role": "user", "content": "<image>Is there a fracture?"},
                  {"role": "assistant", "content": "no"}], "images": ["scans/p001_ct.dcm"]}
  One image per line; every user turn followed by an assistant turn becomes one question (the `<image>`
  tag is removed); the optional keys above may sit beside `messages`.

Image paths are relative to data.root (`.dcm`, 16-bit PNG/TIFF welcome). The split comes from a line's
`split`, else from its file's name (`train.jsonl`, `val.jsonl`, `test.jsonl`), else train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples, DataError
from medvqa.data.formats.common import existing_root, split_from_name, text
from medvqa.data.sample import VQASample, infer_answer_type

FIELDS = ("question_type", "modality", "plane", "organ", "caption", "patient_id")
KNOWN = {"id", "image", "images", "question", "answer", "answer_type", "split", "messages", *FIELDS}
SPLITS = {"train": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}
HINT = "See docs/datasets.md (jsonl) for the line format."


def read(root: str | Path, bad: BadSamples | None = None, files: list[str] | None = None) -> list[VQASample]:
    """`files`: the .jsonl files to read, relative to root; default every *.jsonl directly in root."""
    root, bad = existing_root(Path(root), HINT), bad or BadSamples()
    paths = [root / f for f in files] if files else sorted(root.glob("*.jsonl"))
    if not paths:
        raise DataError(f"data.root={root} has no *.jsonl files. {HINT}")
    samples = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path} not found (data.reader.files={files}). {HINT}")
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    samples += _line(line, path, n, bad)
    return samples


def _line(line: str, path: Path, n: int, bad: BadSamples) -> list[VQASample]:
    where = f"{path} line {n}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        bad.report(where, "malformed JSON", f"{e.msg} at column {e.colno}.")
        return []
    if not isinstance(row, dict):
        bad.report(where, f"line is a {type(row).__name__}, not an object", HINT)
        return []
    turns = _chat_turns(row, where, bad) if "messages" in row else _plain(row, where, bad)
    if turns is None:
        return []
    image, pairs = turns
    split = SPLITS.get(text(row.get("split")).lower(), split_from_name(path.name))
    base_id = text(row.get("id")) or f"{path.stem}-{n}"
    return [
        _sample(row, image, q, a, split, base_id if len(pairs) == 1 else f"{base_id}-t{k}", where)
        for k, (q, a) in enumerate(pairs)
    ]


def _plain(row: dict, where: str, bad: BadSamples):
    missing = [k for k in ("image", "question", "answer") if k not in row]
    if missing:
        bad.report(where, f"missing key(s) {', '.join(missing)}", HINT)
        return None
    return text(row["image"]), [(text(row["question"]), text(row["answer"]))]


def _chat_turns(row: dict, where: str, bad: BadSamples):
    """(image, [(question, answer), ...]) from a messages/images line, or None (reported)."""
    images = row.get("images") or []
    images = [i.get("path") if isinstance(i, dict) else i for i in images]
    if len(images) != 1:
        bad.report(where, f"{len(images)} images on a chat line", "medvqa takes one image per question.")
        return None
    pairs, pending = [], None
    for m in row["messages"] if isinstance(row["messages"], list) else []:
        role, content = (m.get("role"), text(m.get("content"))) if isinstance(m, dict) else (None, "")
        if role == "user":
            pending = content.replace("<image>", "").strip()
        elif role == "assistant" and pending is not None:
            pairs.append((pending, content))
            pending = None
    if not pairs:
        bad.report(where, "no user turn answered by an assistant turn", HINT)
        return None
    return text(images[0]), pairs


def _sample(row: dict, image: str, question: str, answer: str, split: str, sid: str, where: str) -> VQASample:
    answer_type = text(row.get("answer_type")).lower()
    extra: dict[str, Any] = {k: v for k, v in row.items() if k not in KNOWN}
    return VQASample(
        id=sid,
        image=image,
        question=question,
        answer=answer,
        answer_type=answer_type if answer_type in ("closed", "open") else infer_answer_type(answer),
        split=split,
        source=text(row.get("source")) or "jsonl",
        origin=where,
        extra=extra,
        **{k: text(row.get(k)) for k in FIELDS},
    )
