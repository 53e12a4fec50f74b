"""Kvasir-VQA-x1 (`SimulaMet/Kvasir-VQA-x1`): parquet `train` / `test` shards with `img_id`, `complexity`
(1-3), `question`, `answer`, `original` (JSON list of the atomic Kvasir-VQA items) and `question_class`.

The release carries no pixels: its card has users save the Kvasir-VQA images as `images/{img_id}.jpg`
beside the shards (`image_dir`). Shards that do embed an `image` column are read from the parquet instead.
`complexity` stays on the record (`extra`), so `data.filters.complexity` and curricula can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvqa.data.errors import BadSamples
from medvqa.data.formats.common import parquet_columns, parquet_rows, parquet_shards, split_from_name, text
from medvqa.data.formats.kvasir_vqa import question_kind
from medvqa.data.sample import VQASample, infer_answer_type

COLUMNS = ("img_id", "complexity", "question", "answer")
HINT = (
    "Download Kvasir-VQA-x1 ('SimulaMet/Kvasir-VQA-x1': data/train-*.parquet, data/test-*.parquet), save the "
    "Kvasir-VQA images as images/{img_id}.jpg beside it as its card shows, and point data.root there."
)


def read(
    root: str | Path, bad: BadSamples | None = None, image_dir: str = "images", keep_original: bool = False
) -> list[VQASample]:
    """`keep_original` also keeps each row's atomic QA list (a JSON string) in `extra["original"]`."""
    root, bad = Path(root), bad or BadSamples()
    samples = []
    for shard in parquet_shards(root, HINT):
        columns = parquet_columns(shard, COLUMNS, HINT)
        embedded = "image" in columns
        wanted = [*COLUMNS, *(c for c in ("question_class", "original") if c in columns)]
        split = split_from_name(shard.name)
        for row, cells in parquet_rows(shard, wanted):
            where = f"{shard} row {row}"
            complexity = _complexity(cells["complexity"])
            if complexity is None:
                bad.report(
                    where, "complexity is not 1, 2 or 3", "Check the shard is the Kvasir-VQA-x1 release."
                )
                continue
            img_id = text(cells["img_id"])
            question, answer = text(cells["question"]), text(cells["answer"])
            extra: dict[str, Any] = {"img_id": img_id, "complexity": complexity}
            extra["question_class"] = _classes(cells.get("question_class"))
            if keep_original:
                extra["original"] = text(cells.get("original"))
            samples.append(
                VQASample(
                    id=f"kvasir_vqa_x1-{split}-{row}",
                    image=str(shard.relative_to(root)) if embedded else f"{image_dir}/{img_id}.jpg",
                    image_row=row if embedded else None,
                    image_id=f"kvasir-{img_id}",  # the same namespace as kvasir_vqa: one picture, one group
                    question=question,
                    answer=answer,
                    answer_type=infer_answer_type(answer),
                    question_type=",".join(extra["question_class"]) or question_kind(question, answer),
                    modality="endoscopy",
                    split=split,
                    source="kvasir_vqa_x1",
                    origin=where,
                    extra=extra,
                )
            )
    return samples


def _complexity(value: Any) -> int | None:
    try:
        level = int(value)
    except (TypeError, ValueError):
        return None
    return level if level in (1, 2, 3) else None


def _classes(value: Any) -> list[str]:
    """`question_class` as a list of names, whether stored as a list or as a JSON / plain string."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [value]
    if isinstance(value, str):
        value = [value]
    return [text(v) for v in value if text(v)]
