"""Answer files made elsewhere (`python -m medvqa.evaluate predictions=<file>`), matched to a split.

Read by extension and content (`read_answers`):
    {"id": "vqa_rad-85", "prediction": "no"}                  medvqa JSONL ("completion" optional: the whole
                                                               generation, when "prediction" is its parsed answer)
    {"question_id": "vqa_rad-85", "text": "No, there is not."} a LLaVA-Med answer file (model_vqa*.py)
    {"doc_id": 0, "filtered_resps": ..., "target": ...}       an lmms-eval --log_samples file
    [{"question": ..., "answer": ..., "response": ...}, ...]  a MedEvalKit results.json
    <name>.xlsx / <name>.tsv with index, question, answer, prediction   a VLMEvalKit prediction file
(medvqa/eval/harness_files.py has each harness's layout.) Other keys are ignored. An entry is matched to a
split question by id (the split's question ids, predictions.jsonl's `id`, compared as strings), else on its
(question, answer) in file order. A split question without an answer is scored as an empty answer (wrong,
so a partial file cannot look better than it is) and flagged `"missing": true`; entries matching no question
are left out. Both are counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvqa.data.sample import VQASample
from medvqa.eval import harness_files
from medvqa.eval.metrics import score_item
from medvqa.io import text_lines
from medvqa.stages.base import ROW_FIELDS, ROW_OPTIONAL


def read_answers(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """(format, entries) of an answer file: medvqa / LLaVA-Med JSONL, an lmms-eval log_samples JSONL, a
    MedEvalKit results.json or a VLMEvalKit .xlsx / .tsv (medvqa/eval/harness_files.py), told apart by
    extension and content. Each entry: {"where", "id", "question", "answer", "prediction"[, "completion"]}.
    A bad line names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions={path}: no such file; give a JSONL answer file")
    if path.suffix in (".xlsx", ".tsv"):
        return "vlmevalkit", harness_files.vlmevalkit_entries(harness_files.read_table(path), path)
    lines = text_lines(path)
    first = next((line for _, line in lines if line is None or line.strip()), "")
    if first is not None and first.lstrip().startswith("["):
        return _json_list(path)
    entries, kinds = [], set()
    for number, line in lines:
        if line is None:
            raise ValueError(f"predictions={path} line {number} is not UTF-8 text (a binary file?); give a "
                             'JSONL answer file, one {"id": ..., "prediction": ...} per line')  # fmt: skip
        if line.strip():
            kind, item = _parse(line, path, number)
            kinds.add(kind)
            entries.append(item)
    if "lmms_eval" in kinds and len(kinds) > 1:
        raise ValueError(f"predictions={path} mixes lmms-eval log_samples lines with other answer lines; "
                         "give one harness's file")  # fmt: skip
    return (kinds.pop() if len(kinds) == 1 else "medvqa"), entries


def _json_list(path: Path) -> tuple[str, list[dict[str, Any]]]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"predictions={path} is not a JSON list ({e}); give MedEvalKit's results.json"
        ) from None
    if items and isinstance(items[0], dict) and "response" not in items[0] and "prediction" in items[0]:
        return "vlmevalkit", harness_files.vlmevalkit_entries(items, path)  # PRED_FORMAT=json
    return "medevalkit", harness_files.medevalkit_entries(items, path)


def _parse(line: str, path: Path, number: int) -> tuple[str, dict[str, Any]]:
    fix = 'each line needs {"id": ..., "prediction": ...} or {"question_id": ..., "text": ...}'
    where = f"predictions={path} line {number}"
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not JSON ({e.msg}); {fix}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a JSON object; {fix}")
    if "doc_id" in raw and ("filtered_resps" in raw or "resps" in raw):
        return "lmms_eval", harness_files.lmms_eval_entry(raw, where)
    key = raw.get("id", raw.get("question_id"))
    text = raw.get("prediction", raw.get("text"))
    if key is None or text is None or not isinstance(text, str):
        raise ValueError(f"{where} has no id or no text answer; {fix}")
    item = harness_files.entry(where, text, key)
    if isinstance(raw.get("completion"), str):
        item["completion"] = raw["completion"]
    return ("llava_med" if "question_id" in raw and "id" not in raw else "medvqa"), item


def sample_row(sample: VQASample) -> dict[str, Any]:
    """A split question as a predictions.jsonl row (the stage's prediction_row fields), before its answer."""
    row = {k: getattr(sample, k) for k in ROW_FIELDS}
    return row | {k: getattr(sample, k) for k in ROW_OPTIONAL if getattr(sample, k) not in ("", None)}


def _key(question: Any, answer: Any) -> tuple[str, str]:
    return " ".join(str(question).lower().split()), " ".join(str(answer).lower().split())


def _by_id(samples: Sequence[VQASample], entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{split id: entry} for the entries whose id names a split question: exactly, or (lmms-eval) as the
    id's last "-" part when only one question's id ends so. Two entries for one question is an error."""
    ids = {s.id for s in samples}
    tails: dict[str, list[str]] = {}
    for sid in ids:
        tails.setdefault(sid.rsplit("-", 1)[-1], []).append(sid)
    found: dict[str, dict[str, Any]] = {}
    for item in entries:
        key = item["id"]
        if key is not None and key not in ids and item.get("tail_id") and len(tails.get(key, ())) == 1:
            key = tails[key][0]
        if key is None or key not in ids:
            continue
        if key in found:
            raise ValueError(f"{item['where']}: id {key!r} appears twice (also {found[key]['where']}); keep one "
                             "answer per question")  # fmt: skip
        found[key] = item
    return found


def match_entries(samples: Sequence[VQASample], entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{split id: entry}: by id first, then the rest on (question, answer) in file order."""
    found = _by_id(samples, entries)
    used = {id(item) for item in found.values()}
    queues: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in entries:
        if id(item) not in used and item["question"] is not None and item["answer"] is not None:
            queues.setdefault(_key(item["question"], item["answer"]), []).append(item)
    for sample in samples:
        queue = queues.get(_key(sample.question, sample.answer))
        if sample.id not in found and queue:
            found[sample.id] = queue.pop(0)
    return found


def match_answers(
    samples: Sequence[VQASample], entries: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(one scored row per split question, in split order; the counts {"lines", "matched", "unmatched",
    "missing"})."""
    found, rows = match_entries(samples, entries), []
    for sample in samples:
        answer = found.get(sample.id)
        row = {"id": sample.id} | {k: v for k, v in sample_row(sample).items() if k != "id"}
        row["prediction"] = answer["prediction"] if answer else ""
        if answer and "completion" in answer:
            row["completion"] = answer["completion"]
        if answer is None:
            row["missing"] = True
        row["scores"] = score_item(row["prediction"], row["answer"], row["answer_type"], row["question"])
        rows.append(row)
    counts = {"lines": len(entries), "matched": len(found), "unmatched": len(entries) - len(found),
              "missing": len(samples) - len(found)}  # fmt: skip
    return rows, counts
