"""PathVQA (`flaviagiammarino/path-vqa`): parquet shards `train-*`, `validation-*`, `test-*` with `image`
(struct of bytes + path), `question`, `answer`. Closed = a yes/no answer, as the release has no type field.

The image bytes are only hashed while reading (the picture's identity for splitting, since one picture
carries many questions); pixels are decoded per item from (shard, row).
"""

from __future__ import annotations

from pathlib import Path

from medvqa.data.errors import BadSamples
from medvqa.data.formats.common import parquet_columns, parquet_rows, parquet_shards, split_from_name, text
from medvqa.data.sample import VQASample, infer_answer_type

HINT = (
    "Download PathVQA ('flaviagiammarino/path-vqa' on Hugging Face, data/*.parquet) and point data.root "
    "at the folder holding the shards."
)


def read(root: str | Path, bad: BadSamples | None = None) -> list[VQASample]:
    root, bad = Path(root), bad or BadSamples()
    samples = []
    for shard in parquet_shards(root, HINT):
        parquet_columns(shard, ("image", "question", "answer"), HINT)
        split = split_from_name(shard.name)
        for row, cells in parquet_rows(shard, ["image", "question", "answer"]):
            answer = text(cells["answer"])
            samples.append(
                VQASample(
                    id=f"path_vqa-{shard.stem}-{row}",
                    image=str(shard.relative_to(root)),
                    image_row=row,
                    image_id=f"path_vqa-{cells['image']}" if cells["image"] else "",
                    question=text(cells["question"]),
                    answer=answer,
                    answer_type=infer_answer_type(answer),
                    modality="pathology",
                    split=split,
                    source="path_vqa",
                    origin=f"{shard} row {row}",
                )
            )
    return samples
