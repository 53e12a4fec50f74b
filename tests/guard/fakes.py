"""A stand-in for medvqa.inference.Answer with the fields the guard reads, for tests that need no model."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FakeAnswer:
    answer: str
    kind: str = "closed"
    confidence: float | None = None
    mean_logprob: float | None = None
    options: dict | None = None
    question: str = ""
    id: str = ""
    calibrated: bool = False  # the run's temperature was fitted (medvqa.inference.Answer.calibrated)

    def to_row(self) -> dict:
        return asdict(self)
