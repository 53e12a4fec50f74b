"""PathVQA (`flaviagiammarino/path-vqa`): parquet shards `train-*`, `validation-*`, `test-*` with `image`
(struct of bytes + path), `question`, `answer`. Closed = a yes/no answer, as the release has no type field.

The image bytes are only hashed while reading (the picture's identity for splitting, since one picture
carries many questions); pixels are decoded per item from (shard, row).
"""

from __future__ import annotations

from pathlib import Path

from medvqa.data.errors import BadSamples
from medvqa.data.formats.common import parquet_shards, read_qa_parquet
from medvqa.data.sample import VQASample

HINT = (
    "Download PathVQA ('flaviagiammarino/path-vqa' on Hugging Face, data/*.parquet) and point data.root "
    "at the folder holding the shards."
)


def read(root: str | Path, bad: BadSamples | None = None) -> list[VQASample]:
    root = Path(root)
    return read_qa_parquet(
        root, parquet_shards(root, HINT), "path_vqa", HINT, "path_vqa-", modality="pathology"
    )
