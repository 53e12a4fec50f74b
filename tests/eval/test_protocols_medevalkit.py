"""`eval.protocol=medevalkit` equals cases worked by hand from MedEvalKit's code (9b12e3b: utils/utils.py
judge_judgement / judge_close_end_vqa / judge_open_end_vqa / calculate_f1 / bleu, the datasets' cal_metrics,
mathruler's extract_boxed_content). Each case's comment is the path their code takes."""

from __future__ import annotations

import pytest

from medvqa.eval.protocols import medevalkit
from medvqa.eval.protocols.medevalkit import row_scores

YES_NO = [
    # (response, truth, right): VQA-RAD / PathVQA, whose yes/no truths make a question closed
    ("Yes", "yes", 1.0),
    ("No, there is no mass.", "no", 1.0),  # "no" without "yes"; the truth a substring
    ("Unknown", "no", 1.0),  # "no" inside "unknown" counts as saying no
    ("Unknown", "yes", 0.0),
    ("Yes, but no mass", "yes", 0.0),  # both occur: the exclusive or fails
    ("Eyes are normal", "yes", 0.0),  # "yes" (in eyes) and "no" (in normal)
    ("\\boxed{no}", "no", 1.0),  # the last \boxed{} first
    ("\\boxed{yes} then \\boxed{no}", "yes", 0.0),  # the last box wins
    ("<think>maybe yes</think><answer>No</answer>", "no", 1.0),  # then <answer>
    ("The answer is yes", "yes", 1.0),  # parse_response keeps what follows "answer is"
    ("It is not present. Answer: no", "no", 1.0),
    ("The result is boxed yes", "yes", 0.0),  # "boxed" without \boxed{}: their parser yields "None"
    ("YES.", "yes", 1.0),
    ("", "no", 0.0),
]


@pytest.mark.parametrize(("response", "truth", "right"), YES_NO)
def test_yes_no_questions(response, truth, right):
    assert row_scores(response, truth, "closed", "vqa_rad") == {"closed_acc": right, "accuracy": right}


def test_a_closed_question_with_another_truth_is_open_on_vqa_rad():
    # truth "left" is not yes/no: judge_open_end_vqa. em compares "left." with "left" (periods stay);
    # word sets {"left."} vs {"left"} share nothing; BLEU-1 = 1 of the 2 tokens "left" "." = 0.5
    scores = row_scores("Left.", "left", "closed", "vqa_rad")
    assert "closed_acc" not in scores
    assert (scores["exact_match"], scores["token_f1"], scores["sentence_bleu_1"]) == (0.0, 0.0, 0.5)


def test_open_scores_on_word_sets_and_their_bleu():
    # sets {a, mass, in, the, left, lung} and {mass, in, left, lung}: precision 4/6, recall 1, F1 0.8;
    # BLEU-1 4/6, BLEU-2 = sqrt(4/6 * 2/5) (bigrams "mass in", "left lung" of 5)
    s = row_scores("A mass in the left lung", "mass in left lung", "open", "vqa_rad")
    assert (s["exact_match"], s["accuracy"]) == (0.0, 0.0)
    assert (s["open_precision"], s["open_recall"], s["token_f1"]) == pytest.approx((4 / 6, 1.0, 0.8))
    assert s["sentence_bleu_1"] == pytest.approx(4 / 6) and s["sentence_bleu_2"] == pytest.approx(
        (4 / 6 * 2 / 5) ** 0.5
    )
    # repeats do not count (sets): "lung lung lung" vs "lung heart" has recall 1/2
    assert row_scores("lung lung lung", "lung heart", "open", "vqa_rad")["open_recall"] == 0.5
    # parse_response leaves the space after "answer:", so exact match fails while the word sets agree
    s = row_scores("Answer: liver", "liver", "open", "vqa_rad")
    assert (s["exact_match"], s["token_f1"], s["sentence_bleu_1"]) == (0.0, 1.0, 0.5)
    assert row_scores("Liver", "liver", "open", "vqa_rad")["exact_match"] == 1.0


def test_slake_decides_closed_by_answer_type_and_its_capitalised_yes_is_exact_match():
    # SLAKE truths are "Yes"/"No": not in ["yes", "no"], so judge_close_end_vqa (equality) decides
    assert row_scores("Yes", "Yes", "closed", "slake")["closed_acc"] == 1.0
    assert row_scores("Yes, it does.", "Yes", "closed", "slake")["closed_acc"] == 0.0
    assert (
        row_scores("Yes, it does.", "yes", "closed", "slake")["closed_acc"] == 1.0
    )  # lowercase: yes/no rule
    assert row_scores("Left Lung.", "Left Lung", "closed", "slake")["closed_acc"] == 1.0  # periods dropped
    assert row_scores("Left Lung", "Left Lung", "open", "slake")["exact_match"] == 1.0
    assert "closed_acc" not in row_scores("no", "no", "open", "slake")  # OPEN type: open rules


def test_extraction_helpers():
    assert medevalkit.boxed("a \\boxed{x {y}} b") == "x {y}" and medevalkit.boxed("none here") == "None"
    assert medevalkit.tagged("<answer>a</answer> and <answer>b</answer>") == "a b"
    assert medevalkit.tagged("<answer></answer>rest") == "<answer></answer>rest"


def test_through_evaluate_slake_rows_get_slakes_rules(tmp_path):
    """A MedEvalKit SLAKE results.json through `evaluate predictions=`: each row is scored by the rule of
    its source (SLAKE: by answer type, its capitalised Yes/No by equality)."""
    import json

    from medvqa.data.fixtures import write
    from medvqa.evaluate import compose_evaluate, evaluate, read_data
    from tests.eval.protocol_data import QUICK, read_jsonl

    data = [*QUICK, "data=slake", f"data.root={write('slake', tmp_path / 'slake')}"]
    samples = read_data(compose_evaluate(data, tmp_path / "setup")).splits["test"]
    texts = [
        f"{s.answer}, it does." if s.answer_type == "closed" else f"\\boxed{{{s.answer}}}" for s in samples
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"lang": "en", "answer_type": s.answer_type.upper(), "answer": s.answer,
                                    "question": s.question, "response": t} for s, t in zip(samples, texts, strict=True)]))  # fmt: skip
    record = evaluate(
        compose_evaluate([*data, f"predictions={results}", "eval.protocol=medevalkit"], tmp_path / "o")
    )
    rows = read_jsonl(tmp_path / "o" / "predictions.jsonl")
    assert [r["scores"] for r in rows] == [
        row_scores(t, s.answer, s.answer_type, "slake") for s, t in zip(samples, texts, strict=True)
    ]
    # closed "Yes, it does." is wrong against SLAKE's "Yes" (equality); boxed open answers are exact
    assert record["test"]["test/closed_acc"] == 0.0 and record["test"]["test/exact_match"] == 1.0
