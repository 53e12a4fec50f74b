"""Answer files of other evaluation harnesses, read (`evaluate predictions=<file>`) and written (beside
answers.jsonl), so a model scored elsewhere can be compared here and ours can be read there.

Formats, as each project's own writer lays them out:
- lmms-eval `--log_samples` JSONL (lmms_eval/loggers/evaluation_tracker.py `save_results_samples`, 0.7.3):
  one object per question, {"doc_id", "target", "filtered_resps" (the scored text; a list in older
  versions), "resps", "input", "doc_hash", <metric>: ...}; versions before 0.5 also keep "doc" (the
  dataset row). Its question id is the doc's id / qid, else an `id` inside a metric record (the SLAKE
  task's), matched to a medvqa id exactly or as its last "-" part ("12" -> "slake-test-12").
- MedEvalKit `results.json` (utils/base_dataset.py `eval` -> `save_json`): a JSON list of the dataset's rows
  with "question", "answer", "response" (+ "correct", "metrics"); no question id.
- VLMEvalKit predictions (vlmeval/inference.py -> smp/file.py `dump`; `{model}_{dataset}.xlsx` by default,
  `.tsv` with PRED_FORMAT=tsv): the dataset TSV's columns without `image`, plus "prediction"; the
  "index" is the dataset TSV's own.
Entries without an id that names a split question are matched on (question, answer), lowercased with
spaces collapsed, in file order: the same question with the same truth on several images is paired in the
order the file lists them.

Written files hold the whole generation (`completion`, else `prediction`) as the harness's response, and
medvqa's question id (lmms-eval: doc.id, MedEvalKit: "id", VLMEvalKit: an "id" column beside "index").
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medvqa.io import atomic_write_json, atomic_write_text

WRITTEN = {"lmms_eval": "lmms_eval_samples.jsonl", "medevalkit": "medevalkit_results.json",
           "vlmevalkit_xlsx": "vlmevalkit_predictions.xlsx", "vlmevalkit_tsv": "vlmevalkit_predictions.tsv"}  # fmt: skip
VLMEVALKIT_COLUMNS = ("index", "id", "question", "answer", "answer_type", "prediction")


def _cell(value: Any) -> str | None:
    """A spreadsheet / JSON value as text: whole floats as integers (2.0 -> "2", as the TSV had it)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def entry(where: str, text: Any, key: Any = None, question: Any = None, answer: Any = None, **extra) -> dict:
    """One answer as the matcher takes it; `where` names its line or row for error messages."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: no text answer ({text!r}); check the file is the harness's answer file")
    return {"where": where, "id": _cell(key), "question": _cell(question), "answer": _cell(answer),
            "prediction": text} | extra  # fmt: skip


def lmms_eval_entry(raw: dict, where: str) -> dict:
    text = raw.get("filtered_resps", raw.get("resps"))
    while isinstance(text, list):  # [text] (older writers) or [[text, ...]]
        text = text[0] if text else ""
    doc = raw.get("doc") if isinstance(raw.get("doc"), dict) else {}
    key = doc.get("id", doc.get("qid", doc.get("question_id")))
    if key is None:  # 0.7.3 drops "doc"; a task's metric record may carry the id (slake_accuracy.id)
        key = next(
            (v["id"] for v in raw.values() if isinstance(v, dict) and v.get("id") not in (None, "")), None
        )
    return entry(where, text, key, doc.get("question"), raw.get("target", doc.get("answer")), tail_id=True)


def medevalkit_entries(items: list, path: Path) -> list[dict]:
    out = []
    for i, item in enumerate(items):
        where = f"predictions={path} item {i}"
        if not isinstance(item, dict) or "response" not in item:
            raise ValueError(
                f"{where} is not a MedEvalKit result (an object with a 'response'); give its results.json"
            )
        out.append(entry(where, item["response"], item.get("id"), item.get("question"), item.get("answer")))
    return out


def vlmevalkit_entries(table: list[dict[str, Any]], path: Path) -> list[dict]:
    if table and "prediction" not in table[0]:
        raise ValueError(f"predictions={path} has no 'prediction' column; give VLMEvalKit's prediction file "
                         "(its dataset columns index, question, answer plus prediction)")  # fmt: skip
    return [entry(f"predictions={path} row {i + 2}", _cell(r.get("prediction")) or "",
                  r.get("id", r.get("index")), r.get("question"), r.get("answer")) for i, r in enumerate(table)]  # fmt: skip


def read_table(path: Path) -> list[dict[str, Any]]:
    """A VLMEvalKit .xlsx (first sheet, header row) or .tsv as a list of {column: value}."""
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    else:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
    if not rows:
        return []
    head = [str(h) for h in rows[0]]
    return [dict(zip(head, r, strict=False)) for r in rows[1:] if any(v not in (None, "") for v in r)]


def response(row: Mapping[str, Any]) -> str:
    return str(row.get("completion", row["prediction"]))


def write_lmms_eval(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """lmms-eval log_samples lines (doc_id = position in the split); "doc" kept as its older writers did,
    so the question id travels; "medvqa_scores" the row's scores (its baseline loader, finding no number
    there, falls back to comparing target and filtered_resps)."""
    lines = [{"doc_id": i, "doc": {"id": r["id"], "question": r["question"], "answer": r["answer"],
                                   "answer_type": str(r["answer_type"]).upper()},
              "target": str(r["answer"]), "filtered_resps": response(r), "input": r["question"],
              "medvqa_scores": r.get("scores", {})} for i, r in enumerate(rows)]  # fmt: skip
    atomic_write_text(path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return path


def write_medevalkit(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """MedEvalKit results.json items with the keys its cal_metrics reads (question, answer, answer_type,
    lang, response), plus our id."""
    items = [{"id": r["id"], "question": r["question"], "answer": r["answer"], "lang": "en",
              "answer_type": str(r["answer_type"]).upper(), "response": response(r)} for r in rows]  # fmt: skip
    atomic_write_json(path, items)
    return path


def _table_rows(rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [i, r["id"], r["question"], r["answer"], r["answer_type"], response(r)] for i, r in enumerate(rows)
    ]


def write_vlmevalkit(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """VLMEvalKit's prediction file (.xlsx or .tsv by suffix): index (position), id, question, answer,
    answer_type, prediction. xlsx cells are always text (a "=..." answer is not a formula) and characters
    a spreadsheet cannot hold (control characters) are dropped."""
    table = _table_rows(rows)
    if path.suffix == ".xlsx":
        from openpyxl import Workbook
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        book = Workbook()
        sheet = book.active
        sheet.append(VLMEVALKIT_COLUMNS)
        for values in table:
            sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in values])
        for row in sheet.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, str):
                    cell.data_type = "s"
        path.parent.mkdir(parents=True, exist_ok=True)
        book.save(path)
        return path
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows([VLMEVALKIT_COLUMNS, *table])
    atomic_write_text(path, buf.getvalue())
    return path


def write_all(rows: list[Mapping[str, Any]], out: Path) -> list[Path]:
    """Every harness file of WRITTEN into `out`; returns their paths."""
    return [write_lmms_eval(rows, out / WRITTEN["lmms_eval"]), write_medevalkit(rows, out / WRITTEN["medevalkit"]),
            write_vlmevalkit(rows, out / WRITTEN["vlmevalkit_xlsx"]),
            write_vlmevalkit(rows, out / WRITTEN["vlmevalkit_tsv"])]  # fmt: skip
