"""The scoring protocol on cases worked by hand."""

import pytest

from medvqa.answers import parsed_answer
from medvqa.eval.metrics import VQAScores, exact_match, normalize, open_recall, score_item, token_f1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes.", "yes"),
        ("The left lung", "left lung"),
        ("Two nodules", "2 nodules"),
        ("isn't enlarged", "is not enlarged"),
        ("3.5 cm", "3.5 cm"),  # a decimal point survives
        ("1,000", "1000"),  # a number with commas loses them
        ("x-ray, PA view", "x ray pa view"),
        ("An MRI", "mri"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "said", ["Unknown", "I cannot tell", "Yes, there is an abnormality.", "normal", "nodule"]
)
def test_closed_acc_does_not_find_no_inside_other_words(said):
    """The character-substring rule scored all of these 1.0 against "no" (its letters appear in them)."""
    assert score_item(said, "no", "closed", "Is there an abnormality?")["closed_acc"] == 0.0
    assert score_item("There is no fracture.", "no", "closed", "Is there a fracture?")["closed_acc"] == 1.0
    assert exact_match("No.", "no") == 1.0


def test_open_recall_and_f1_by_hand():
    # truth {left, lung, base}, prediction {left, lung}: recall 2/3, precision 1, F1 = 2*(1*2/3)/(5/3) = 0.8
    assert open_recall("the left lung", "left lung base") == pytest.approx(2 / 3)
    assert token_f1("the left lung", "left lung base") == pytest.approx(0.8)
    # multisets: a repeated word counts once per occurrence in the truth
    assert open_recall("lung", "lung lung") == pytest.approx(0.5)
    assert open_recall("", "lung") == 0.0 and open_recall("lung", "") == 0.0
    assert token_f1("heart", "lung") == 0.0


def test_score_item_keys_follow_answer_type():
    assert set(score_item("yes", "yes", "closed")) == {"exact_match", "closed_acc", "closed_exact", "hedged"}
    assert set(score_item("a b", "a", "open")) == {"exact_match", "open_recall", "token_f1"}


def test_torchmetric_aggregates_per_answer_type():
    m = VQAScores()
    m.update(["yes", "normal", "left lung"], ["yes", "no", "left lung base"], ["closed", "closed", "open"])
    m.update(["ct"], ["mri"], ["open"])
    out = {k: float(v) for k, v in m.compute().items()}
    assert out["closed_acc"] == pytest.approx(0.5)  # "normal" does not name "no"
    assert out["closed_exact"] == pytest.approx(0.5)
    assert out["open_recall"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["token_f1"] == pytest.approx((0.8 + 0) / 2)
    assert out["exact_match"] == pytest.approx(1 / 4)
    m.reset()
    assert float(m.compute()["closed_acc"]) == 0.0 and int(m.n_all) == 0


# -- a closed question is scored on the answer, not the whole completion (issue 10 item 4) ------------------
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Yes. The lesion is on the left", "Yes"),
        ("The mass measures 3.5 cm. It is benign", "The mass measures 3.5 cm"),  # a decimal is no full stop
        ("no; the heart is normal", "no"),
        ("left\nright", "left"),
        ("<think>it is dark</think><answer>no. really</answer>", "no"),  # the tag first, then its sentence
        ("yes, no", "yes, no"),  # a comma does not end the sentence
        ("  ", ""),
    ],
)
def test_closed_answer_is_the_tagged_answer_else_the_first_sentence(completion, expected):
    assert parsed_answer(completion) == expected


@pytest.mark.parametrize(
    ("pred", "truth", "acc", "exact", "hedge"),
    [
        ("no", "no", 1.0, 1.0, 0.0),
        ("normal", "no", 0.0, 0.0, 0.0),  # "normal" names neither yes nor no
        ("There is no fracture.", "no", 1.0, 0.0, 0.0),  # names "no": right, but not terse
        ("yes, no", "no", 0.0, 0.0, 1.0),  # both polar answers: a hedge is wrong
        ("Yes or no", "yes", 0.0, 0.0, 1.0),
        ("left and right", "left", 0.0, 0.0, 1.0),
        ("left and right", "left and right", 1.0, 1.0, 0.0),  # the truth itself names both: no hedge
        ("Yes. The lesion is on the left", "yes", 1.0, 1.0, 0.0),
        ("Yes. No.", "no", 0.0, 0.0, 0.0),  # committed to the first sentence's answer
        ("The lesion is on the left. yes", "yes", 0.0, 0.0, 0.0),
    ],
)
def test_closed_scores_on_hand_cases(pred, truth, acc, exact, hedge):
    scores = score_item(pred, truth, "closed")
    assert (scores["closed_acc"], scores["closed_exact"], scores["hedged"]) == (acc, exact, hedge)


def test_long_garbage_completion_scores_nothing_on_closed_questions():
    # a 48-token GRPO completion that names every answer: a whole-text substring rule would score it right
    garbage = " ".join(["ct left no yes lung the right mass axial liver normal absent present"] * 4)
    for truth in ("yes", "no", "left", "right"):
        scores = score_item(garbage, truth, "closed")
        assert scores["closed_acc"] == 0.0 and scores["closed_exact"] == 0.0 and scores["hedged"] == 1.0


def test_torchmetric_reports_the_hedged_rate_over_closed_questions():
    m = VQAScores()
    m.update(["yes, no", "no", "left lung"], ["yes", "no", "left lung"], ["closed", "closed", "open"])
    out = {k: float(v) for k, v in m.compute().items()}
    assert out["hedged"] == pytest.approx(0.5) and out["closed_acc"] == pytest.approx(0.5)


def test_options_the_question_offers_are_what_a_closed_answer_is_judged_on():
    question = "Is this a CT or an MRI?"
    assert score_item("It is a CT scan.", "CT", "closed", question)["closed_acc"] == 1.0
    assert score_item("CT or MRI", "CT", "closed", question)["hedged"] == 1.0
    assert score_item("It is a CT scan.", "CT", "closed")["closed_acc"] == 0.0  # no question: strict equality
    m = VQAScores()
    m.update(["the left side"], ["left"], ["closed"], ["Is the lesion on the left or right?"])
    assert float(m.compute()["closed_acc"]) == 1.0
