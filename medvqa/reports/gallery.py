"""The gallery of test items: which questions to show (runs disagreeing first) and their thumbnails.

Images are opened with medvqa/data/images.py from the fields a prediction row records (`image`, and
`image_row` / `image_member` for parquet rows and zip members; DICOM is windowed as in training), shrunk
to a thumbnail and embedded as a JPEG data: URI, so the report is one file.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from medvqa.data.errors import DataError
from medvqa.data.images import open_image
from medvqa.data.sample import VQASample
from medvqa.reports.runs import RunData

MAX_ITEMS = 48
THUMB_SIDE = 160


def verdict(row: dict[str, Any]) -> str:
    """right | partly | wrong for one answer: closed by closed_acc (else closed_exact), open by exact
    match, `partly` when an open answer has some of the ground truth's words (open_recall > 0)."""
    scores = row.get("scores", {})
    if row.get("answer_type") == "closed":
        value = scores.get("closed_acc", scores.get("closed_exact"))
        return "right" if value else "wrong"
    if scores.get("exact_match") or scores.get("open_recall") == 1:
        return "right"
    return "partly" if scores.get("open_recall") else "wrong"


def pick_items(tables: list[dict[str, dict]], ids: list[str], limit: int = MAX_ITEMS) -> list[str]:
    """Up to `limit` shared ids: those where the runs' verdicts differ first, then those every run got
    wrong, then the rest; each group in the first run's order (deterministic)."""

    def rank(i: str) -> int:
        verdicts = {verdict(t[i]) for t in tables}
        return 0 if len(verdicts) > 1 else 1 if verdicts != {"right"} else 2

    return sorted(ids, key=rank)[:limit]  # sorted is stable: ties keep the first run's order


def sample_of(row: dict[str, Any], config: dict[str, Any]) -> VQASample | None:
    """The VQASample open_image needs, from a prediction row; None when the row records no image (rows
    written before prediction rows carried it). A relative path is taken from the run's data.root."""
    image = row.get("image")
    if not image:
        return None
    root = config.get("data.root")
    if not Path(image).is_absolute() and isinstance(root, str) and root:
        image = str(Path(root) / image)
    return VQASample(id=str(row["id"]), image=image, question=str(row.get("question", "")),
                     answer=str(row.get("answer", "")), answer_type=row.get("answer_type", "open"),
                     image_row=row.get("image_row"), image_member=row.get("image_member") or "")  # fmt: skip


def thumbnail(sample: VQASample, side: int = THUMB_SIDE) -> str:
    """A data:image/jpeg URI of the sample's image, longer side `side` pixels."""
    image = open_image(sample, max_side=side)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def gallery(runs: list[RunData], tables: list[dict[str, dict]], ids: list[str], limit: int = MAX_ITEMS):
    """One dict per shown item: id, question, answer, answer_type, image (a data URI or None), note (why
    there is no image), disagree, answers [{"text", "verdict"}] in run order."""
    items = []
    for i in pick_items(tables, ids, limit):
        first = tables[0][i]
        image, note = None, ""
        sample = next(
            (s for run, t in zip(runs, tables, strict=True) if (s := sample_of(t[i], run.config))), None
        )
        if sample is None:
            note = "no image in predictions.jsonl (an older run)"
        else:
            try:
                image = thumbnail(sample)
            except DataError as e:
                note = f"image not readable here: {e}"
        answers = [{"text": str(t[i].get("prediction", "")), "verdict": verdict(t[i])} for t in tables]
        items.append({"id": i, "question": first.get("question", ""), "answer": first.get("answer", ""),
                      "answer_type": first.get("answer_type", ""), "image": image, "note": note,
                      "disagree": len({a["verdict"] for a in answers}) > 1, "answers": answers,
                      "tags": [first[k] for k in ("question_type", "modality", "organ") if first.get(k)]})  # fmt: skip
    return items
