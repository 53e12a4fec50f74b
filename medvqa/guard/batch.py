"""The guard over a batch of questions (`python -m medvqa.predict ... guard=patient`): in patient mode the
out-of-scope questions are never sent to the model; every row gets the decision and the text shown.

    rows = guarded_rows(guard, items, lambda todo: predictor.answer_many(todo, batch_size=16))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any


def guarded_rows(guard, items: Sequence[Any], answer_many: Callable[[list], list]) -> list[dict[str, Any]]:
    """One row per item the model answered or the guard referred, in input order: the Answer's own row
    (`Answer.to_row()`, `answer` null for a question patient mode kept from the model) plus the decision's
    fields (`guard`, `shown_text`, `guard_rule`, `guard_reason`, `guard_confidence`). Items `answer_many`
    skipped (unreadable images, data.on_bad_sample=skip) get no row."""
    keep_from_model = [
        guard.mode == "patient" and not guard.scope.check(it.question).in_scope for it in items
    ]
    answers = answer_many([it for it, kept in zip(items, keep_from_model, strict=True) if not kept])
    by_id: dict[str, list] = defaultdict(list)  # answers come back in order, minus the skipped ones
    for a in answers:
        by_id[str(a.id)].append(a)
    rows = []
    for item, kept in zip(items, keep_from_model, strict=True):
        if kept:
            decision = guard.decide(item.question, _never_called)
            row = {"id": str(item.id), "image": str(item.image), "question": item.question, "answer": None}
        elif by_id.get(str(item.id)):
            answer = by_id[str(item.id)].pop(0)
            decision = guard.decide(item.question, lambda _q, a=answer: a)
            row = answer.to_row()
        else:
            continue  # skipped by the predictor
        rows.append(row | decision.fields())
    return rows


def _never_called(question: str):
    raise AssertionError("patient mode asked the model an out-of-scope question")
