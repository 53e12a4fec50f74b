"""`eval.protocol=lmms_eval` equals lmms-eval's own SLAKE scoring, installed from PyPI, on the 122 pairs of
tests/eval/fixtures/lmms_eval_slake_pairs.json.

lmms-eval pins packages medvqa cannot share (wandb==0.25, an older protobuf), so it is installed without
its dependencies (`pip install --no-deps lmms-eval==0.7.3`, which `make install` does) and its SLAKE task
module is loaded from the installed package by path: importing `lmms_eval.tasks` would build its whole task
index. That module's own imports (datasets, loguru, huggingface_hub, PIL, numpy) are in medvqa's [dev]
extra. A missing part fails the test with the line to run; it never skips."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medvqa.eval.protocols import lmms_eval
from tests.eval.protocol_data import fixture

PAIRS = fixture("lmms_eval_slake_pairs.json")["pairs"]
INSTALL = "pip install --no-deps 'lmms-eval==0.7.3' (make install does)"


def their_slake_utils():
    """lmms_eval/tasks/slake/utils.py of the installed lmms-eval, as a module."""
    spec = importlib.util.find_spec("lmms_eval")  # the package's __init__ is not run
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"lmms-eval is not installed; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "slake" / "utils.py"
    if not path.is_file():
        pytest.fail(f"{path} missing: lmms-eval without its SLAKE task; {INSTALL}")
    module_spec = importlib.util.spec_from_file_location("lmms_eval_slake_utils", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError as e:
        pytest.fail(f"lmms-eval's SLAKE task cannot import {e.name}: pip install -e '.[dev]'")
    return module


@pytest.fixture(scope="module")
def theirs():
    return their_slake_utils()


def test_the_fixture_has_at_least_100_pairs_of_each_kind_of_case():
    assert len(PAIRS) >= 100
    assert {p["answer_type"] for p in PAIRS} == {"OPEN", "CLOSED"} and {p["q_lang"] for p in PAIRS} == {
        "en",
        "zh",
    }


def test_every_pair_scores_as_their_process_results(theirs):
    mismatches, right = [], 0
    for i, p in enumerate(PAIRS):
        doc = {
            "qid": i,
            "question": "q",
            "answer": p["answer"],
            "answer_type": p["answer_type"],
            "q_lang": p["q_lang"],
        }
        record = theirs.slake_process_results(doc, [p["prediction"]])["slake_accuracy"]
        kind = p["answer_type"].lower()
        ours = lmms_eval.row_scores(p["prediction"], p["answer"], kind)
        if (record["prediction_normalized"], record["target_normalized"]) != (
            lmms_eval.normalize_answer(p["prediction"]),
            lmms_eval.normalize_answer(p["answer"]),
        ) or ours != {"accuracy": float(record["is_correct"]), f"{kind}_acc": float(record["is_correct"])}:
            mismatches.append((p, record, ours))
        right += record["is_correct"]
    assert not mismatches
    assert 0 < right < len(PAIRS)  # both outcomes occur: the comparison can tell rules apart


def test_their_aggregates_are_the_means_of_our_rows(theirs):
    docs = [{"qid": i, "answer": p["answer"], "answer_type": p["answer_type"], "q_lang": p["q_lang"]}
            for i, p in enumerate(PAIRS)]  # fmt: skip
    records = [
        theirs.slake_process_results(d, [p["prediction"]])["slake_accuracy"]
        for d, p in zip(docs, PAIRS, strict=True)
    ]
    rows = lmms_eval.score_rows([{"prediction": p["prediction"], "answer": p["answer"],
                                  "answer_type": p["answer_type"].lower()} for p in PAIRS])  # fmt: skip

    def mean(key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values)

    assert mean("accuracy") == pytest.approx(theirs.slake_aggregate_accuracy(records))
    assert mean("closed_acc") == pytest.approx(theirs.slake_aggregate_closed_accuracy(records))
    assert mean("open_acc") == pytest.approx(theirs.slake_aggregate_open_accuracy(records))


def test_hand_worked_cases():
    assert lmms_eval.normalize_answer("Liver (enlarged).") == "liver"
    assert lmms_eval.normalize_answer("X-Ray") == lmms_eval.normalize_answer("x ray") == "xray"
    assert (
        lmms_eval.normalize_answer("x-ray image") == "x ray image"
        and lmms_eval.normalize_answer("Yeah!") == "yes"
    )
    assert lmms_eval.normalize_answer(None) == "" and lmms_eval.normalize_answer("不是") == "no"
