"""`eval.protocol=llava_med` / `llava_med_batch` equal LLaVA-Med's run_eval.py / run_eval_batch.py
(b9a98a7), through `python -m medvqa.evaluate predictions=<LLaVA-Med answer file>`, on the 78 pairs of
tests/eval/fixtures/llava_med_pairs.json (their values come from their own code; see the file's "about")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medvqa.eval.evaluation import apply_protocol, metrics_from_rows
from medvqa.eval.metrics import score_item
from medvqa.eval.protocols import llava_med
from medvqa.evaluate import compose_evaluate, evaluate
from medvqa.run import ROOT_DIR
from tests.eval.protocol_data import QUICK, fixture, jsonl_dataset, read_jsonl

REF = fixture("llava_med_pairs.json")
PAIRS = REF["pairs"]
# their printed table row -> our metric key (theirs x100, rounded by tabulate to 6 significant digits)
TABLE = {"yes/no accuracy": "closed_acc", "recall": "open_recall", "precision": "open_precision",
         "f1 score": "token_f1", "exact match score": "exact_match", "open accuracy": "open_acc",
         "bleu_score_1": "sentence_bleu_1", "bleu_score_2": "sentence_bleu_2", "bleu_score_3": "sentence_bleu_3"}  # fmt: skip


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """evaluate predictions=<their answer-file layout> under both protocols: {protocol: (record, rows)}."""
    tmp = tmp_path_factory.mktemp("llava_med")
    root = jsonl_dataset(tmp / "data", PAIRS)
    answers = tmp / "answer-file.jsonl"  # model_vqa_med.py's lines
    answers.write_text("".join(json.dumps({"question_id": f"q{i}", "prompt": p["question"], "text": p["text"],
                                           "answer_id": "x", "model_id": "m", "metadata": {}}) + "\n"
                               for i, p in enumerate(PAIRS)))  # fmt: skip
    args = [*QUICK, "data=jsonl", f"data.root={root}", f"predictions={answers}"]
    # llava_med through the command itself, llava_med_batch through its main's body (faster)
    done = subprocess.run([sys.executable, "-m", "medvqa.evaluate", *args, "eval.protocol=llava_med",
                           f"hydra.run.dir={tmp / 'llava_med'}"], cwd=ROOT_DIR, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = {"llava_med": json.loads((tmp / "llava_med" / "metrics.json").read_text())}
    out["llava_med_batch"] = evaluate(
        compose_evaluate([*args, "eval.protocol=llava_med_batch"], tmp / "batch")
    )
    return {k: (v, read_jsonl(tmp / ("batch" if k.endswith("batch") else k) / "predictions.jsonl"))
            for k, v in out.items()}  # fmt: skip


def test_at_least_60_pairs_both_kinds():
    kinds = [p["answer_type"] for p in PAIRS]
    assert len(PAIRS) >= 60 and kinds.count("closed") >= 30 and kinds.count("open") >= 30


def test_evaluate_equals_their_run_eval_table(scored):
    record, _ = scored["llava_med"]
    assert record["scorer"]["protocol"] == "llava_med" and record["predictions"]["matched"] == len(PAIRS)
    for theirs, ours in TABLE.items():
        assert record["test"][f"test/{ours}"] * 100 == pytest.approx(REF["run_eval_table"][theirs], abs=6e-5)
    # medvqa-only values do not stand beside theirs
    assert "test/closed_exact" not in record["test"] and "test/hedged" not in record["test"]


@pytest.mark.parametrize(
    ("protocol", "key"), [("llava_med", "run_eval"), ("llava_med_batch", "run_eval_batch")]
)
def test_every_question_scores_as_their_code_scores_it(scored, protocol, key):
    _, rows = scored[protocol]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(len(PAIRS))]
    for row, pair in zip(rows, PAIRS, strict=True):
        assert row["scores"] == pair[key], (pair["text"], pair["answer"])


def test_batch_script_drops_the_yes_no_gate(scored):
    gated, batch = scored["llava_med"][0]["test"], scored["llava_med_batch"][0]["test"]
    assert batch["test/closed_acc"] > gated["test/closed_acc"]  # "left" in "on the left side": no yes/no
    assert batch["test/open_recall"] == gated["test/open_recall"]


def test_hand_worked_facts_of_their_code():
    # calculate_f1score counts the candidate's repeats: tp = 3 (lung x3), fn = 1 (heart)
    assert llava_med.f1_precision_recall("lung lung lung", "lung heart") == (pytest.approx(6 / 7), 1.0, 0.75)
    # their contraction map adds apostrophes and never expands them
    assert llava_med.normalize_word("isnt") == "isn't" and llava_med.normalize_word("isn't") == "isn't"
    # a mark beside a space anywhere is deleted everywhere; otherwise it becomes a space
    assert (
        llava_med.normalize_word("x-ray") == "x ray"
        and llava_med.normalize_word("x-ray - left") == "xray left"
    )
    assert llava_med.normalize_word("3,000 cells") == "3000 cells" and llava_med.normalize_word("two") == "2"
    gate = llava_med.row_scores
    assert gate("Unknown", "no", "closed", ())["closed_acc"] == 1.0  # "no" inside "unknown"
    assert gate("left", "left", "closed", ())["closed_acc"] == 0.0  # no yes/no: wrong under the gate
    assert gate("left", "left", "closed", (), gate=False)["closed_acc"] == 1.0


def test_an_unknown_protocol_is_refused_before_any_data_is_read(tmp_path):
    cfg = compose_evaluate([*QUICK, "eval.protocol=vqa", "data=jsonl", f"data.root={tmp_path / 'none'}",
                            f"predictions={tmp_path / 'none.jsonl'}"], tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match=r"^eval.protocol=vqa: choose one of"):
        evaluate(cfg)


def test_medvqa_changes_nothing_and_an_unknown_protocol_is_named():
    rows = [{"id": "0", "prediction": "yes", "answer": "yes", "answer_type": "closed",
             "scores": score_item("yes", "yes", "closed")}]  # fmt: skip
    metrics = metrics_from_rows(rows, "test")
    before = (dict(metrics), dict(rows[0]["scores"]))
    apply_protocol(rows, metrics, "test", "medvqa")
    assert (metrics, rows[0]["scores"]) == before
    with pytest.raises(ValueError, match=r"eval.protocol=vqa: choose one of \['medvqa', 'llava_med'"):
        apply_protocol(rows, metrics, "test", "vqa")
