"""Shared guard fixtures: the scope guard built from a generated synthetic training split (the real reader),
and a stand-in for medvqa.inference.Answer's fields."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # heldout_questions.py next to this file


@dataclass(frozen=True)
class FakeAnswer:
    """The fields of medvqa.inference.Answer that the guard reads."""

    answer: str
    kind: str = "closed"
    confidence: float | None = None
    mean_logprob: float | None = None
    question: str = ""
    id: str = ""


@pytest.fixture(scope="session")
def training_questions(tmp_path_factory) -> list[str]:
    from medvqa.data.formats.synthetic import read

    samples = read(tmp_path_factory.mktemp("synthetic"), n_patients=30, images_per_patient=2, image_size=32)
    return [s.question for s in samples if s.split == "train"]


@pytest.fixture(scope="session")
def scope(training_questions):
    from medvqa.guard import ScopeGuard

    return ScopeGuard(training_questions, min_similarity=0.5)
