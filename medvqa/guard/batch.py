"""The guard over a batch of questions (`python -m medvqa.predict ... guard=patient`): in patient mode the
out-of-scope questions, and every question about an image unlike the training images, are never sent to
the model; every row gets the decision and the text shown.

    rows = guarded_rows(guard, items, lambda todo: predictor.answer_many(todo, batch_size=16))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def guarded_rows(guard, items: Sequence[Any], answer_many: Callable[[list], list]) -> list[dict[str, Any]]:
    """One row per item the model answered or the guard referred, in input order: the Answer's own row
    (`Answer.to_row()`, `answer` null for a question patient mode kept from the model) plus the decision's
    fields (`guard`, `shown_text`, `guard_rule`, `guard_reason`, `guard_confidence`). Items `answer_many`
    skipped (unreadable images, data.on_bad_sample=skip) get no row."""
    verdicts = image_verdicts(guard, items)
    keep_from_model = [
        guard.mode == "patient" and (not guard.scope.check(it.question).in_scope or bool(v and v.novel))
        for it, v in zip(items, verdicts, strict=True)
    ]
    sent_at = [n for n, kept in enumerate(keep_from_model) if not kept]
    sent = [items[n] for n in sent_at]
    answer_of = {sent_at[k]: a for k, a in _pair(sent, answer_many(sent)).items()}
    rows = []
    for n, (item, kept, verdict) in enumerate(zip(items, keep_from_model, verdicts, strict=True)):
        if kept:
            decision = guard.decide(item.question, _never_called, verdict)
            row = {"id": str(item.id), "image": str(item.image), "question": item.question, "answer": None}
        elif n in answer_of:
            answer = answer_of[n]
            decision = guard.decide(item.question, lambda _q, a=answer: a, verdict)
            row = answer.to_row()
        else:
            continue  # skipped by the predictor
        rows.append(row | decision.fields())
    return rows


def image_verdicts(guard, items: Sequence[Any]) -> list:
    """The novelty verdict of each item's image (medvqa/guard/novelty.py), each distinct file decoded once;
    None where there is no check or the image cannot be decoded (the predictor reports or skips it)."""
    if getattr(guard, "novelty", None) is None or guard.mode == "off":
        return [None] * len(items)
    by_file: dict[str, Any] = {}
    out = []
    for it in items:
        if isinstance(it.image, (str, Path)):
            row, member = getattr(it, "image_row", None), getattr(it, "image_member", "")
            key = f"{it.image}\0{row}\0{member}"
            if key not in by_file:
                by_file[key] = guard.image_verdict(it.image, row, member)
            out.append(by_file[key])
        else:
            out.append(guard.image_verdict(it.image))
    return out


def _pair(sent: Sequence[Any], answers: Sequence[Any]) -> dict[int, Any]:
    """{index in `sent`: its answer}. The answers come back in the order of `sent`,
    minus the items the predictor skipped, so they are paired by position: each answer goes to the next
    sent item it answers (same id and question, and image where the answer names one). Never by id alone:
    ids may repeat, and a skipped first item would hand its id's answer to the wrong row."""
    out: dict[int, Any] = {}
    at = 0
    for answer in answers:
        while at < len(sent) and not _answers(answer, sent[at]):
            at += 1
        if at == len(sent):
            raise RuntimeError(f"answer for id {answer.id!r} matches no question sent to the model")
        out[at] = answer
        at += 1
    return out


def _answers(answer, item) -> bool:
    """Whether `answer` is the predictor's answer to `item`."""
    if str(answer.id) != str(item.id) or answer.question != item.question:
        return False
    image = getattr(answer, "image", "")
    return not image or not isinstance(item.image, (str, Path)) or str(item.image) == image


def _never_called(question: str):
    raise AssertionError("patient mode asked the model an out-of-scope question")
