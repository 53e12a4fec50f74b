"""Scope, abstention and output checks between a question, the model and the patient (docs/app.md).

from medvqa.guard import Guard, calibrate

guard = Guard.for_run(run_dir, predictor, mode="patient")
decision = guard.decide(question, lambda q: predictor.answer(image, q))
"""

from medvqa.guard.abstain import calibrate, score_of
from medvqa.guard.guard import MODES, NOT_SURE, Decision, Guard
from medvqa.guard.novelty import NOVEL_TEXT, NoveltyGuard, NoveltyVerdict
from medvqa.guard.output import DISCLAIMER, alarming
from medvqa.guard.scope import ScopeGuard, ScopeVerdict

__all__ = ["MODES", "NOT_SURE", "NOVEL_TEXT", "DISCLAIMER", "Decision", "Guard", "NoveltyGuard", "NoveltyVerdict",
           "ScopeGuard", "ScopeVerdict", "alarming", "calibrate", "score_of"]  # fmt: skip
