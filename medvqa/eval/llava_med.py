"""LLaVA-Med answer files: our prediction rows in the JSONL layout their scripts read, and back. (Their
scoring, `eval.protocol=llava_med`, is ported in medvqa/eval/protocols/llava_med.py.)

LLaVA-Med's `llava/eval/model_vqa*.py` write one line per question:
  {"question_id": ..., "prompt": ..., "text": ..., "answer_id": ..., "model_id": ..., "metadata": {}}
and `llava/eval/run_eval.py --pred <file>` scores `text` against its ground-truth file, matching lines by
position after asserting the `question_id` lists are equal: so lines keep the test split's order.

Differences from their writer, on purpose:
- `answer_id` is deterministic (theirs is a random `shortuuid.uuid()`): the first 128 bits of
  sha256(model_id + "\\0" + question_id), written in shortuuid's alphabet and length (22 characters), so an
  export is reproducible byte for byte and the same question of the same model keeps its id.
- `metadata` carries our fields (ground truth, answer type, the scored answer, categories) instead of {}.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's 57 characters
ID_LENGTH = 22
METADATA_FIELDS = ("answer", "answer_type", "prediction", "question_type", "organ", "modality", "source")


def answer_id(model_id: str, question_id: Any) -> str:
    """A 22-character shortuuid-style id, a pure function of (model_id, question_id)."""
    digest = hashlib.sha256(f"{model_id}\0{question_id}".encode()).digest()
    number, chars = int.from_bytes(digest[:16], "big"), []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def answer_line(row: Mapping[str, Any], model_id: str, text_field: str = "completion") -> dict[str, Any]:
    """One prediction row (predictions.jsonl layout: id, question, answer, answer_type, prediction, and
    `completion` where the generation differs from the scored answer) as a LLaVA-Med answer line.

    `text` is the model's whole generation (`completion`, else `prediction`) with the default
    text_field="completion", as LLaVA-Med's own writer stores it; text_field="prediction" exports the
    answer medvqa scored instead."""
    if text_field not in ("completion", "prediction"):
        raise ValueError(f"text_field={text_field!r}; use 'completion' or 'prediction'")
    missing = [k for k in ("id", "question", "prediction") if k not in row]
    if missing:
        raise ValueError(
            f"prediction row {row.get('id', '?')!r} lacks {missing}: not a predictions.jsonl row"
        )
    text = row.get("completion", row["prediction"]) if text_field == "completion" else row["prediction"]
    metadata = {k: row[k] for k in METADATA_FIELDS if k in row and row[k] not in ("", None)}
    return {"question_id": row["id"], "prompt": row["question"], "text": text,
            "answer_id": answer_id(model_id, row["id"]), "model_id": model_id, "metadata": metadata}  # fmt: skip


def write_answer_file(
    rows: Iterable[Mapping[str, Any]], path: str | Path, model_id: str, text_field: str = "completion"
) -> Path:
    """Write `rows` (in order) as a LLaVA-Med answer file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(answer_line(row, model_id, text_field), ensure_ascii=False) + "\n")
    return path


def read_answer_file(path: str | Path) -> list[dict[str, Any]]:
    """A LLaVA-Med answer file (ours or theirs) as rows {"id": question_id, "prediction": text}, in file
    order, for scoring predictions made elsewhere. Errors name the line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rows.append({"id": str(item["question_id"]), "prediction": str(item["text"])})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"{path} line {number}: not a LLaVA-Med answer line ({e!r}); each line needs "
                '{"question_id": ..., "text": ...}'
            ) from None
    return rows
