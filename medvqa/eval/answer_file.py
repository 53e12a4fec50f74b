"""Answer files made elsewhere (`python -m medvqa.evaluate predictions=<file.jsonl>`), matched to a split.

One JSON object per line, either of
    {"id": "vqa_rad-85", "prediction": "no"}                  (medvqa; "completion" optional: the whole
                                                               generation, when "prediction" is its parsed answer)
    {"question_id": "vqa_rad-85", "text": "No, there is not."} (a LLaVA-Med answer file, model_vqa*.py)
Other keys are ignored. Ids are the split's question ids (predictions.jsonl's `id`) and compare as strings.
A split question without a line is scored as an empty answer (wrong, so a partial file cannot look better
than it is) and flagged `"missing": true`; lines whose id is not in the split are left out. Both are counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvqa.data.sample import VQASample
from medvqa.eval.metrics import score_item
from medvqa.io import text_lines
from medvqa.stages.base import ROW_FIELDS, ROW_OPTIONAL


def read_answers(path: str | Path) -> dict[str, dict[str, str]]:
    """{id: {"prediction"[, "completion"]}} from an answer file; a bad line or a repeated id is an error
    naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions={path}: no such file; give a JSONL answer file")
    answers: dict[str, dict[str, str]] = {}
    for number, line in text_lines(path):
        if line is None:
            raise ValueError(f"predictions={path} line {number} is not UTF-8 text (a binary file?); give a "
                             'JSONL answer file, one {"id": ..., "prediction": ...} per line')  # fmt: skip
        if not line.strip():
            continue
        item = _parse(line, path, number)
        key = str(item.get("id", item.get("question_id")))
        if key in answers:
            raise ValueError(
                f"predictions={path} line {number}: id {key!r} appears twice; keep one answer per question"
            )
        answers[key] = item
    return answers


def _parse(line: str, path: Path, number: int) -> dict[str, str]:
    fix = 'each line needs {"id": ..., "prediction": ...} or {"question_id": ..., "text": ...}'
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"predictions={path} line {number} is not JSON ({e.msg}); {fix}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"predictions={path} line {number} is not a JSON object; {fix}")
    key = raw.get("id", raw.get("question_id"))
    text = raw.get("prediction", raw.get("text"))
    if key is None or text is None or not isinstance(text, str):
        raise ValueError(f"predictions={path} line {number} has no id or no text answer; {fix}")
    item = {"id": str(key), "prediction": text}
    if isinstance(raw.get("completion"), str):
        item["completion"] = raw["completion"]
    return item


def sample_row(sample: VQASample) -> dict[str, Any]:
    """A split question as a predictions.jsonl row (the stage's prediction_row fields), before its answer."""
    row = {k: getattr(sample, k) for k in ROW_FIELDS}
    return row | {k: getattr(sample, k) for k in ROW_OPTIONAL if getattr(sample, k) not in ("", None)}


def match_answers(
    samples: Sequence[VQASample], answers: dict[str, dict[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(one scored row per split question, in split order; the counts {"lines", "matched", "unmatched",
    "missing"})."""
    rows, ids = [], set()
    for sample in samples:
        ids.add(sample.id)
        answer = answers.get(sample.id)
        row = sample_row(sample) | (answer or {"prediction": ""})
        row.pop("id", None)
        row = {"id": sample.id} | row
        if answer is None:
            row["missing"] = True
        row["scores"] = score_item(row["prediction"], row["answer"], row["answer_type"], row["question"])
        rows.append(row)
    matched = sum(1 for key in answers if key in ids)
    counts = {"lines": len(answers), "matched": matched, "unmatched": len(answers) - matched,
              "missing": len(samples) - matched}  # fmt: skip
    return rows, counts
