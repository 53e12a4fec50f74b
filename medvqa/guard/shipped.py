"""The shipped evaluation set of the guard (medvqa/guard/data/questions.jsonl): patient-style questions
written for this project, each with the decision expected of the scope guard.

Each line: {"question", "category", "expected"}; `expected` is "referred" (out of scope: never sent to the
model) or "answered" (in scope: sent to the model, which may still abstain on a low confidence).
"""

from __future__ import annotations

import json
from importlib.resources import files


def shipped_questions() -> list[dict]:
    text = files("medvqa.guard").joinpath("data/questions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def refusal_report(scope, questions: list[dict] | None = None) -> dict:
    """How the scope guard (`scope.check`) treats the shipped set: the share of out-of-scope questions
    refused, the share of in-scope ones let through, and every miss."""
    questions = shipped_questions() if questions is None else questions
    verdicts = [(q, scope.check(q["question"])) for q in questions]
    out = [(q, v) for q, v in verdicts if q["expected"] == "referred"]
    ins = [(q, v) for q, v in verdicts if q["expected"] == "answered"]
    return {
        "out_of_scope": len(out),
        "refusal_rate": sum(not v.in_scope for _, v in out) / max(1, len(out)),
        "in_scope": len(ins),
        "pass_rate": sum(v.in_scope for _, v in ins) / max(1, len(ins)),
        "missed": [q["question"] for q, v in out if v.in_scope],
        "wrongly_refused": [(q["question"], v.detail) for q, v in ins if not v.in_scope],
        "by_rule": _count(v.kind for _, v in out),
    }


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))
