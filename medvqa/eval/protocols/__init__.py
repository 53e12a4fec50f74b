"""The scoring protocols `eval.protocol` chooses, in one table (docs/evaluation.md "Protocols").

`medvqa` is medvqa's own rule (medvqa/eval/metrics.py, the scores the stage computed); every other entry is
an exact port of a published harness's scorer, one module each, naming the commit it follows:

    llava_med        LLaVA-Med run_eval.py (b9a98a7)        protocols/llava_med.py score_rows
    llava_med_batch  LLaVA-Med run_eval_batch.py (b9a98a7)  protocols/llava_med.py score_rows_batch
    medevalkit       MedEvalKit cal_metrics (9b12e3b)       protocols/medevalkit.py
    lmms_eval        lmms-eval 0.7.3 SLAKE task             protocols/lmms_eval.py

A port gives each prediction row its own per-question scores (`score_rows(rows) -> [scores]`, one dict per
row, keys only where the protocol defines them), and the split's values are their means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medvqa.eval.protocols import llava_med, lmms_eval, medevalkit

RowScorer = Callable[[Sequence[dict[str, Any]]], list[dict[str, float]]]
# name -> (per-row scorer or None for medvqa's own scores, what it follows)
TABLE: dict[str, tuple[RowScorer | None, str]] = {
    "medvqa": (None, "medvqa/eval/metrics.py score_item"),
    "llava_med": (llava_med.score_rows, llava_med.FOLLOWS),
    "llava_med_batch": (llava_med.score_rows_batch, llava_med.FOLLOWS_BATCH),
    "medevalkit": (medevalkit.score_rows, medevalkit.FOLLOWS),
    "lmms_eval": (lmms_eval.score_rows, lmms_eval.FOLLOWS),
}


def scorer(protocol: str) -> RowScorer | None:
    """The protocol's row scorer (None: medvqa's own); an unknown name is a user error naming the key."""
    if protocol not in TABLE:
        raise ValueError(f"eval.protocol={protocol}: choose one of {list(TABLE)}")
    return TABLE[protocol][0]


def means(rows: Sequence[dict[str, Any]], split: str) -> dict[str, float]:
    """{"<split>/<key>": mean over the rows that have the key}, for every key some row's scores have:
    float64 sums in row order, then float32, as medvqa's own metric computes its values."""
    keys = sorted({k for r in rows for k in r["scores"]})
    out = {}
    for key in keys:
        values = [float(r["scores"][key]) for r in rows if key in r["scores"]]
        total = 0.0
        for v in values:
            total += v
        out[f"{split}/{key}"] = float(np.float32(total / len(values)))
    return out
