"""Per-category metrics with counts, on rows laid out as predictions.jsonl holds them."""

import pytest

from medvqa.eval.breakdown import breakdown, breakdown_rows, present_keys, summarize
from medvqa.eval.metrics import score_item


def row(i, answer_type, pred, truth, **fields):
    return {"id": f"q{i}", "answer": truth, "answer_type": answer_type, "prediction": pred,
            "scores": score_item(pred, truth, answer_type)} | fields  # fmt: skip


ROWS = [
    row(
        0, "closed", "yes", "yes", organ="chest", modality="xray", question_type="presence", source="vqa_rad"
    ),
    row(1, "closed", "no", "yes", organ="chest", modality="ct", question_type="presence", source="vqa_rad"),
    row(2, "closed", "no", "no", organ="head", modality="ct", question_type="presence", source="slake"),
    row(
        3,
        "open",
        "left lung",
        "left lung",
        organ="chest",
        modality="xray",
        question_type="position",
        source="slake",
    ),
    row(4, "open", "kidney", "liver", organ="abdomen", modality="ct", question_type="organ", source="slake"),
    row(5, "open", "right kidney", "kidney", organ="", modality="mri", question_type="organ", source="slake"),
]


def test_every_metric_per_category_with_counts():
    table = breakdown(ROWS)
    assert list(table) == ["question_type", "organ", "modality", "answer_type", "source"]
    chest = table["organ"]["chest"]
    assert chest["n"] == 3
    # closed_acc only over the two closed chest rows (1 right, 1 wrong); exact_match over all three
    assert chest["metrics"]["closed_acc"] == {"mean": 0.5, "n": 2}
    assert chest["metrics"]["exact_match"] == {"mean": pytest.approx(2 / 3), "n": 3}
    assert chest["metrics"]["open_recall"] == {"mean": 1.0, "n": 1}
    assert table["answer_type"]["closed"]["metrics"]["closed_acc"]["mean"] == pytest.approx(2 / 3)
    assert "closed_acc" not in table["answer_type"]["open"]["metrics"]
    organ_items = table["question_type"]["organ"]["metrics"]["open_recall"]
    assert organ_items == {"mean": pytest.approx(0.5), "n": 2}  # kidney/liver 0, right kidney/kidney 1


def test_counts_add_up_and_order_is_largest_first():
    table = breakdown(ROWS)
    for categories in table.values():
        assert sum(c["n"] for c in categories.values()) == len(ROWS)
    assert list(table["organ"]) == ["chest", "(unset)", "abdomen", "head"]  # ties by name
    assert list(table["source"]) == ["slake", "vqa_rad"]


def test_only_keys_some_row_has():
    bare = [{"id": "q0", "answer_type": "open", "scores": {"token_f1": 0.5}}]
    assert present_keys(bare) == ["answer_type"]
    assert list(breakdown(bare)) == ["answer_type"]
    assert breakdown([]) == {}


def test_intervals_and_flat_rows():
    table = breakdown(ROWS, keys=["answer_type"], ci=True, seed=0)
    closed = table["answer_type"]["closed"]["metrics"]["closed_acc"]
    assert closed["low"] <= closed["mean"] <= closed["high"]
    assert breakdown(ROWS, keys=["answer_type"], ci=True, seed=0) == table  # seeded: same numbers
    flat = breakdown_rows(table)
    assert [(r["group"], r["value"], r["n"]) for r in flat] == [("answer_type", "closed", 3),
                                                                ("answer_type", "open", 3)]  # fmt: skip
    assert flat[0]["closed_acc"] == closed["mean"] and flat[0]["closed_acc_n"] == 3
    assert flat[0]["closed_acc_low"] == closed["low"]


def test_summarize_skips_missing_values():
    rows = [{"scores": {"a": 1.0, "b": None}}, {"scores": {"a": 0.0}}, {}]
    assert summarize(rows) == {"n": 3, "metrics": {"a": {"mean": 0.5, "n": 2}}}
