"""Guard.decide in each mode, the output check and the disclaimer."""

from __future__ import annotations

import pytest

from medvqa.guard import DISCLAIMER, NOT_SURE, Guard, alarming
from medvqa.guard.output import ALARMING_REFERRAL
from medvqa.guard.patterns import REFERRALS
from tests.guard.fakes import FakeAnswer

THRESHOLDS = {"closed": 0.8, "open": -0.5}


class Model:
    """answer_fn that records the questions it was asked."""

    def __init__(self, answer: FakeAnswer):
        self.answer, self.asked = answer, []

    def __call__(self, question: str) -> FakeAnswer:
        self.asked.append(question)
        return self.answer


@pytest.fixture
def guard(scope):
    return Guard("patient", scope, THRESHOLDS)


def test_out_of_scope_never_reaches_the_model(guard):
    model = Model(FakeAnswer("yes", confidence=0.99))
    decision = guard.decide("Do I have cancer?", model)
    assert model.asked == [] and decision.answer is None
    assert decision.guard == "referred" and decision.rule == "cancer"
    assert decision.shown_text == REFERRALS["cancer"]


def test_confident_in_scope_answer_is_shown_with_the_disclaimer(guard):
    decision = guard.decide("Is there a lesion in this image?", Model(FakeAnswer("yes", confidence=0.93)))
    assert decision.guard == "answered" and decision.confidence == 0.93
    assert decision.shown_text.startswith("Answer: yes") and decision.shown_text.endswith(DISCLAIMER)


@pytest.mark.parametrize(
    "answer",
    [FakeAnswer("no", confidence=0.79), FakeAnswer("ct", "open", mean_logprob=-0.9),
     FakeAnswer("yes", confidence=None)],
)  # fmt: skip
def test_low_confidence_abstains(guard, answer):
    decision = guard.decide("Is there a lesion in this image?", Model(answer))
    assert (
        decision.guard == "abstained"
        and decision.shown_text == NOT_SURE
        and decision.rule == "low_confidence"
    )


def test_threshold_is_inclusive_and_per_kind(guard):
    assert (
        guard.decide("Which organ is shown?", Model(FakeAnswer("head", "open", mean_logprob=-0.5))).guard
        == "answered"
    )
    assert guard.decide("Is this a CT image?", Model(FakeAnswer("yes", confidence=0.8))).guard == "answered"


def test_alarming_answer_is_referred_even_when_confident(guard):
    decision = guard.decide(
        "Which organ is shown?", Model(FakeAnswer("metastatic liver", "open", mean_logprob=-0.01))
    )
    assert decision.guard == "referred" and decision.rule == "alarming"
    assert decision.shown_text == ALARMING_REFERRAL and "metastatic" not in decision.shown_text


@pytest.mark.parametrize(
    ("answer", "question", "term"),
    [("a malignant mass", "", "malignant"), ("Tumour in the left lobe", "", "Tumour"),
     ("yes", "Is there a haemorrhage?", "haemorrhage"), ("no", "Is there a haemorrhage?", ""),
     ("left", "", ""), ("ct", "", ""), ("benign-looking", "", ""),
     # compound tumour names, and the words for death the list lacked
     ("glioblastoma", "", "glioblastoma"), ("yes", "Is this lesion an adenocarcinoma?", "adenocarcinoma"),
     ("osteosarcoma", "", "osteosarcoma"), ("multiple myeloma", "", "myeloma"),
     ("mesothelioma", "", "mesothelioma"), ("yes", "Is it deadly?", "deadly"), ("lethal", "", "lethal"),
     ("aggressive mass", "", "aggressive"), ("no", "Is it lethal?", ""),
     # read as the scope patterns read them: NFKC and de-leeted
     ("yes", "Is it canc3rous?", "cancerous"), ("ｔｕｍｏｕｒ", "", "tumour")],
)  # fmt: skip
def test_alarming_terms(answer, question, term):
    assert alarming(answer, question) == term


def test_compound_tumour_name_answer_is_not_shown(guard):
    decision = guard.decide(
        "What is the lesion?", Model(FakeAnswer("glioblastoma", "open", mean_logprob=-0.01))
    )
    assert decision.guard == "referred" and decision.rule == "alarming"


def test_research_mode_asks_the_model_and_shows_raw_answers(scope):
    guard = Guard("research", scope, THRESHOLDS)
    model = Model(FakeAnswer("yes", confidence=0.4))
    referred = guard.decide("Do I have cancer?", model)
    assert model.asked == ["Do I have cancer?"]
    assert referred.guard == "referred" and referred.shown_text == "yes" and referred.confidence == 0.4
    abstained = guard.decide("Is there a lesion in this image?", model)
    assert abstained.guard == "abstained" and abstained.shown_text == "yes"


def test_off_mode_answers_everything():
    decision = Guard("off").decide("Do I have cancer?", Model(FakeAnswer("no", confidence=0.2)))
    assert decision.guard == "answered" and decision.shown_text == "no" and decision.rule == "off"


def test_decision_fields_for_a_prediction_line(guard):
    fields = guard.decide("Do I have cancer?", Model(FakeAnswer("yes"))).fields()
    assert fields["guard"] == "referred" and fields["shown_text"] == REFERRALS["cancer"]
    assert set(fields) == {"guard", "shown_text", "guard_rule", "guard_reason", "guard_confidence"}


def test_bad_mode_names_the_key(scope):
    with pytest.raises(ValueError, match="guard.mode='strict'"):
        Guard("strict", scope)
