"""guarded_rows: the guard over a batch, as `python -m medvqa.predict ... guard=` applies it."""

from __future__ import annotations

from dataclasses import dataclass

from medvqa.guard import Guard
from medvqa.guard.batch import guarded_rows
from medvqa.guard.patterns import REFERRALS
from tests.guard.fakes import FakeAnswer


@dataclass(frozen=True)
class Item:
    image: str
    question: str
    id: str


ITEMS = [Item("a.png", "Is there a lesion in this image?", "1"), Item("a.png", "Do I have cancer?", "2"),
         Item("b.png", "Which organ is shown?", "3")]  # fmt: skip


def answer_many_skipping(skip_ids=()):
    asked = []

    def answer_many(items):
        asked.extend(it.question for it in items)
        return [
            FakeAnswer("yes", confidence=0.99, question=it.question, id=it.id)
            for it in items
            if it.id not in skip_ids
        ]

    return answer_many, asked


def test_patient_mode_keeps_out_of_scope_questions_from_the_model(scope):
    answer_many, asked = answer_many_skipping()
    rows = guarded_rows(Guard("patient", scope, {"closed": 0.5, "open": -1.0}), ITEMS, answer_many)
    assert asked == ["Is there a lesion in this image?", "Which organ is shown?"]
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert [r["guard"] for r in rows] == ["answered", "referred", "answered"]
    assert rows[1]["answer"] is None and rows[1]["shown_text"] == REFERRALS["cancer"]
    assert rows[0]["answer"] == "yes" and rows[0]["shown_text"].startswith("Answer: yes")


def test_research_mode_answers_all_and_skipped_items_have_no_row(scope):
    answer_many, asked = answer_many_skipping(skip_ids={"3"})
    rows = guarded_rows(Guard("research", scope, {"closed": 0.5, "open": -1.0}), ITEMS, answer_many)
    assert len(asked) == 3 and [r["id"] for r in rows] == ["1", "2"]
    assert rows[1]["guard"] == "referred" and rows[1]["answer"] == "yes" and rows[1]["shown_text"] == "yes"


def test_a_repeated_id_after_a_skipped_image_keeps_each_row_its_own_answer(scope):
    """Answers are paired to rows by position, never by id: with id "x" twice and the first image
    unreadable, the second row gets its own answer and the first none (pairing by id gave the first row,
    "Do I have cancer?", the second question's answer and judged it on the wrong question)."""
    items = [
        Item("gone.png", "Do I have cancer?", "x"),
        Item("b.png", "Is there a lesion in this image?", "x"),
    ]

    def answer_many(todo):
        return [FakeAnswer("yes", confidence=0.99, question=it.question, id=it.id) for it in todo
                if it.image != "gone.png"]  # fmt: skip

    rows = guarded_rows(Guard("research", scope, {"closed": 0.5, "open": -1.0}), items, answer_many)
    assert [(r["question"], r["guard"]) for r in rows] == [("Is there a lesion in this image?", "answered")]
