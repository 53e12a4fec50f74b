"""The one record every dataset reader produces: paths and text, never pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerType = Literal["closed", "open"]
YES_NO = {"yes", "no"}


@dataclass
class VQASample:
    """One question about one image.

    `image` is a path relative to the dataset root (or absolute). When `image_row` is set, `image` is a
    parquet file and `image_row` the row whose `image` column holds the encoded bytes (decoded lazily).
    """

    id: str
    image: str
    question: str
    answer: str
    answer_type: AnswerType = "open"
    question_type: str = ""
    modality: str = ""
    plane: str = ""
    organ: str = ""
    caption: str = ""
    patient_id: str = ""
    split: str = "train"
    source: str = ""
    image_row: int | None = None
    origin: str = ""  # "file row N": where the record came from, for error messages
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """What a split must never put on two sides: the patient when known, else the image."""
        return self.patient_id or f"{self.image}#{self.image_row}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def infer_answer_type(answer: str) -> AnswerType:
    """Releases without an answer-type field (e.g. HF VQA-RAD): closed means a yes/no answer."""
    return "closed" if answer.strip().lower() in YES_NO else "open"
