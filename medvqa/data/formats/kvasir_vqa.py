"""Kvasir-VQA (GI endoscopy, `SimulaMet-HOST/Kvasir-VQA`): parquet shards `data/*.parquet` with columns
`image` (struct of bytes + path), `source`, `question`, `answer`, `img_id`; one split, `raw`.

There is no official split, so every row is 'train' here and the splitter carves val/test by `img_id`
(seeded; one image never on two sides). Images stay inside the parquet and are decoded per item.
"""

from __future__ import annotations

import re
from pathlib import Path

from medvqa.data.errors import BadSamples
from medvqa.data.formats.common import parquet_columns, parquet_rows, parquet_shards, text
from medvqa.data.sample import VQASample, infer_answer_type

COLUMNS = ("question", "answer", "img_id")
HINT = (
    "Download Kvasir-VQA ('SimulaMet-HOST/Kvasir-VQA' on Hugging Face, the data/*.parquet shards) and "
    "point data.root at the folder holding them."
)
# The release's question kinds (yes/no, single/multiple choice, color, location, count), told apart by
# the wording of its fixed question templates; named in the VQA-RAD vocabulary where one fits.
KINDS = (
    (re.compile(r"^how many\b"), "COUNT"),
    (re.compile(r"\bcolou?r\b"), "COLOR"),
    (re.compile(r"^where\b"), "POS"),
    (re.compile(r"\bsize\b"), "SIZE"),
    (re.compile(r"\bprocedure\b"), "PROCEDURE"),
)


def question_kind(question: str, answer: str) -> str:
    q = question.strip().lower()
    for pattern, kind in KINDS:
        if pattern.search(q):
            return kind
    if infer_answer_type(answer) == "closed":
        return "YESNO"
    return "CHOICE"


def read(root: str | Path, bad: BadSamples | None = None) -> list[VQASample]:
    root, bad = Path(root), bad or BadSamples()
    samples = []
    for shard in parquet_shards(root, HINT):
        columns = parquet_columns(shard, ("image", *COLUMNS), HINT)
        wanted = [c for c in (*COLUMNS, "source") if c in columns]  # never the image bytes here
        for row, cells in parquet_rows(shard, wanted):
            where = f"{shard} row {row}"
            img_id = text(cells["img_id"])
            if not img_id:
                bad.report(where, "empty img_id", "Every Kvasir-VQA row names its image; check the shard.")
                continue
            question, answer = text(cells["question"]), text(cells["answer"])
            samples.append(
                VQASample(
                    id=f"kvasir_vqa-{shard.stem}-{row}",
                    image=str(shard.relative_to(root)),
                    image_row=row,
                    image_id=f"kvasir-{img_id}",
                    question=question,
                    answer=answer,
                    answer_type=infer_answer_type(answer),
                    question_type=question_kind(question, answer),
                    modality="endoscopy",
                    source="kvasir_vqa",
                    origin=where,
                    extra={"img_id": img_id, "image_source": text(cells.get("source"))},
                )
            )
    return samples
