"""The scope guard judges every clause: a health worry joined to an allowed question is referred before the
model is asked, and in-scope conjunctions stay answered (held-back sets in heldout_questions.py)."""

from __future__ import annotations

import pytest
from heldout_questions import IN_SCOPE, JOINED_IN_SCOPE, JOINED_OUT_OF_SCOPE

from medvqa.guard import Guard
from medvqa.guard.clauses import clauses
from medvqa.guard.scope import UNLIKE, ScopeGuard
from medvqa.guard.shipped import refusal_report
from tests.guard.fakes import FakeAnswer

# training questions of a VQA-RAD-like run (which asks about findings), beside the synthetic ones
FINDINGS = ["Is there a mass?", "Is there a pleural effusion?", "Are the lungs visible?", "Is the heart enlarged?",
            "Is this a CT scan?", "Is this image axial?"]  # fmt: skip


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("What imaging modality was used and does it look bad?",
         ["What imaging modality was used", "does it look bad?"]),
        ("In which plane was this image taken? Also, is it healthy?",
         ["In which plane was this image taken?", "is it healthy?"]),
        ("Is this a chest scan and am I going to be okay?", ["Is this a chest scan", "am I going to be okay?"]),
        ("Is this an MRI; is it axial", ["Is this an MRI", "is it axial"]),
        ("Which organ is shown, and also which plane?", ["Which organ is shown", "which plane?"]),
        # "and" between nouns is not a cut
        ("Is there a mass and an effusion?", ["Is there a mass and an effusion?"]),
        ("Are the lungs and the heart visible?", ["Are the lungs and the heart visible?"]),
        ("Is the lesion on the left or the right side?", ["Is the lesion on the left or the right side?"]),
        ("  ?  ", ["?"]),
    ],
)  # fmt: skip
def test_clauses_cut_where_a_new_clause_begins(question, parts):
    assert clauses(question) == parts


def test_every_joined_health_worry_is_referred_before_the_model(scope):
    """The held-back joined set: all referred, in patient mode without the model being asked."""
    guard = Guard("patient", scope, {"closed": 0.0, "open": -1000.0})
    asked = []
    decisions = {q: guard.decide(q, lambda q: asked.append(q) or FakeAnswer("yes", confidence=1.0))
                 for q in JOINED_OUT_OF_SCOPE}  # fmt: skip
    answered = [q for q, d in decisions.items() if d.guard != "referred"]
    assert answered == [] and asked == []
    # the ones no pattern names are caught by a clause's own similarity, and the reason quotes it
    by_clause = decisions["What imaging modality was used and does it look bad?"]
    assert by_clause.rule == UNLIKE and "in clause 'does it look bad?'" in by_clause.reason


def test_the_allowed_part_alone_is_in_scope(scope):
    """Each joined question's allowed part passes on its own: the referral is the worry's doing."""
    assert scope.check("What imaging modality was used").in_scope
    assert scope.check("In which plane was this image taken?").in_scope


def test_in_scope_conjunctions_stay_answered(training_questions, scope):
    findings = ScopeGuard(training_questions + FINDINGS, min_similarity=0.5, encoder=scope.encoder)
    refused = {
        q: findings.check(q).detail for q in JOINED_IN_SCOPE + IN_SCOPE if not findings.check(q).in_scope
    }
    assert refused == {}


def test_coverage_of_the_shipped_in_scope_questions_holds(scope):
    report = refusal_report(scope)
    assert report["pass_rate"] == 1.0 and report["refusal_rate"] == 1.0, report["wrongly_refused"]
