"""medvqa/answers.py: the one reading of answers that metrics, rewards, mined pairs, confidence and the guard share."""

import ast
from pathlib import Path

import pytest

from medvqa.answers import closed_verdict, named_options, parsed_answer, question_options

PACKAGE = Path(__file__).resolve().parents[1] / "medvqa"


@pytest.mark.parametrize(
    ("answer", "truth", "correct", "hedged"),
    [
        ("Unknown", "no", False, False),  # "no" inside "unknown" is no answer
        ("I cannot tell", "no", False, False),
        ("Yes, there is an abnormality.", "no", False, False),
        ("There is no fracture.", "no", True, False),
        ("Eyes are visible", "yes", False, False),  # "yes" inside "eyes"
        ("Yes, it is not enlarged", "yes", True, False),  # "not" is not "no"
        ("yes or no", "no", False, True),
        ("yes or no", "yes", False, True),
        ("normal", "no", False, False),  # the substring rule's known flaw, gone
        ("No.", "no", True, False),
        ("YES", "Yes", True, False),
    ],
)
def test_a_yes_no_answer_is_right_when_it_names_exactly_the_truths_word(answer, truth, correct, hedged):
    assert closed_verdict(parsed_answer(answer), truth, "Is there a fracture?") == (correct, hedged)


@pytest.mark.parametrize(
    ("question", "answer", "truth", "correct", "hedged"),
    [
        ("Is this a CT or MRI?", "MRI", "MRI", True, False),
        ("Is this a CT or MRI?", "It is a CT scan", "CT", True, False),
        ("Is this a CT or MRI?", "CT or MRI", "CT", False, True),
        ("Is this a CT or MRI?", "An ultrasound", "CT", False, False),
        ("Is the lesion on the left or right?", "The left side", "left", True, False),
        ("Is the lesion on the left or right?", "right", "left", False, False),
        ("Is the left lung or the right lung affected?", "Left lung", "left", True, False),
        ("Is this image axial or coronal?", "coronal plane", "Coronal", True, False),
        ("Is this a chest x-ray or an abdominal CT?", "A chest X-ray", "chest x-ray", True, False),
        # a truth outside the question's options: strict equality
        ("Is there effusion or edema?", "yes", "yes", True, False),
        ("What organ is shown?", "liver", "Liver", True, False),
        ("What organ is shown?", "the liver, mostly", "liver", False, False),
        ("What is abnormal?", "left and right", "left", False, True),
    ],
)
def test_a_closed_question_offering_options_is_judged_on_the_option_the_answer_names(
    question, answer, truth, correct, hedged
):
    assert closed_verdict(parsed_answer(answer), truth, question) == (correct, hedged)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Dr. Smith found a mass. It is large.", "Dr. Smith found a mass"),
        ("Approx. 3 cm. Benign.", "Approx. 3 cm"),
        ("It measures 3.5 cm. Benign.", "It measures 3.5 cm"),
        ("e.g. the liver. More text", "e.g. the liver"),
        ("No. There is nothing.", "No"),
        ("<think>Is it? Maybe.</think><answer>Yes. Surely.</answer>", "Yes"),
        ("yes\nbecause", "yes"),
    ],
)
def test_the_parsed_answer_is_the_tag_else_the_first_sentence_and_abbreviations_do_not_end_it(
    completion, expected
):
    assert parsed_answer(completion) == expected


def test_an_option_inside_a_longer_named_option_is_not_named_too():
    assert named_options("CT with contrast", ["CT", "CT with contrast"]) == ["CT with contrast"]
    assert named_options("a CT", ["CT", "CT with contrast"]) == ["CT"]
    assert question_options("Is there a mass or not?") == ["yes", "no"]
    assert question_options("What organ is this?") is None


def test_answers_is_the_ground_floor_and_nobody_else_parses_answers():
    """answers.py imports nothing from medvqa; the modules that read answers import it, not eval.metrics
    (an arrow that ran upwards from data/, losses/, rewards/ and inference/)."""
    tree = ast.parse((PACKAGE / "answers.py").read_text())
    own = [
        n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("medvqa")
    ]
    assert own == []
    for path in ("data/preference.py", "losses/answer_ce.py", "rewards/match.py", "inference/polar.py",
                 "guard/abstain.py"):  # fmt: skip
        text = (PACKAGE / path).read_text()
        assert "from medvqa.answers import" in text, path
        assert "from medvqa.eval.metrics import normalize" not in text, path
