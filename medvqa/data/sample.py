"""The one record every dataset reader produces: paths and text, never pixels."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

AnswerType = Literal["closed", "open"]
YES_NO = {"yes", "no"}


@dataclass(slots=True)
class VQASample:
    """One question about one image.

    `image` is a path relative to the dataset root (or absolute). When `image_row` is set, `image` is a
    parquet file and `image_row` the row whose `image` column holds the encoded bytes; when `image_member`
    is set, `image` is a zip archive and `image_member` the file inside it. Either is decoded lazily.
    `image_id` names the picture itself where the path does not (parquet rows repeat one picture).
    Slots: a 50k-row release is 50k records, so each one stays small.
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
    image_member: str = ""
    image_id: str = ""
    origin: str = ""  # "file row N": where the record came from, for error messages
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_key(self) -> str:
        """The picture: its id when the release gives one, else where its bytes are."""
        if self.image_id:
            return self.image_id
        return (
            self.image
            + (f"#{self.image_row}" if self.image_row is not None else "")
            + (f"::{self.image_member}" if self.image_member else "")
        )

    @property
    def group(self) -> str:
        """What a split must never put on two sides: the patient when known, else the image."""
        return self.patient_id or self.image_key

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: its recursive deep copy was ~10% of collation, and only `extra` nests
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"extra": dict(self.extra)}


def infer_answer_type(answer: str) -> AnswerType:
    """Releases without an answer-type field (e.g. HF VQA-RAD): closed means a yes/no answer."""
    return "closed" if answer.strip().lower() in YES_NO else "open"
