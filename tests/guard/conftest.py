"""Shared guard fixtures: the scope guard built from a generated synthetic training split (the real reader)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # heldout_questions.py next to this file


@pytest.fixture(scope="session")
def training_questions(tmp_path_factory) -> list[str]:
    from medvqa.data.formats.synthetic import read

    samples = read(tmp_path_factory.mktemp("synthetic"), n_patients=30, images_per_patient=2, image_size=32)
    return [s.question for s in samples if s.split == "train"]


@pytest.fixture(scope="session")
def scope(training_questions):
    from medvqa.guard import ScopeGuard

    return ScopeGuard(training_questions, min_similarity=0.5)
