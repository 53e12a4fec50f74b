"""Every metric per category: question type, organ, modality, answer type, source dataset.

Input rows are prediction rows as predictions.jsonl holds them (medvqa/stages/base.py `_evaluate`): a dict
with the item's fields (`id`, `answer_type`, and where the evaluation adds them `question_type`, `organ`,
`modality`, `source`, the VQASample field names) and `scores`, its per-item metric values
({"exact_match": 1.0, "closed_acc": 1.0, ...}; a metric a row does not have, e.g. closed_acc on an open
question, is left out of that row's mean, not counted as 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medvqa.eval.stats import N_BOOT, bootstrap_ci, row_clusters

GROUP_KEYS = ("question_type", "organ", "modality", "answer_type", "source")
UNSET = "(unset)"  # rows without a value for a key present elsewhere: counts still add up to the total


def _value(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    return str(value)


def present_keys(rows: Sequence[Mapping[str, Any]], keys: Iterable[str] = GROUP_KEYS) -> list[str]:
    """The grouping keys some row has a value for (in `keys` order)."""
    return [k for k in keys if any(_value(r, k) for r in rows)]


def summarize(
    rows: Sequence[Mapping[str, Any]],
    ci: bool = False,
    seed: int = 0,
    unit: str = "patient",
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """{"n": rows, "metrics": {metric: {"mean", "n"[, "low", "high", "unit", "n_clusters"]}}} over `rows`'
    per-item scores; with `ci`, a seeded cluster bootstrap 95% interval per metric resampling `unit`
    (eval.ci_unit: patient | image | question; medvqa/eval/stats.py)."""
    values: dict[str, list[float]] = defaultdict(list)
    members: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        for metric, v in row.get("scores", {}).items():
            if v is not None:
                values[metric].append(float(v))
                members[metric].append(row)
    metrics = {}
    for metric in sorted(values):
        vs = values[metric]
        entry = {"mean": sum(vs) / len(vs), "n": len(vs)}
        if ci:
            clusters, used = row_clusters(members[metric], unit)
            interval = bootstrap_ci(vs, n_boot=n_boot, seed=seed, clusters=clusters, unit=used)
            entry |= {k: interval[k] for k in ("low", "high", "unit", "n_clusters")}
        metrics[metric] = entry
    return {"n": len(rows), "metrics": metrics}


def breakdown(
    rows: Sequence[Mapping[str, Any]],
    keys: Iterable[str] = GROUP_KEYS,
    ci: bool = False,
    seed: int = 0,
    unit: str = "patient",
    n_boot: int = N_BOOT,
) -> dict[str, dict[str, Any]]:
    """{key: {category value: summarize(rows with that value)}} for each key in `keys` that some row
    has; categories ordered by count (largest first), then name; rows without a value go to "(unset)".
    Intervals (`ci`) resample `unit` clusters within each category."""
    out: dict[str, dict[str, Any]] = {}
    for key in present_keys(rows, keys):
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[_value(row, key) or UNSET].append(row)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out[key] = {value: summarize(members, ci, seed, unit, n_boot) for value, members in ordered}
    return out


def breakdown_rows(table: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`breakdown(...)` flattened for CSV / markdown: one dict per (key, value) with `n` and each metric's
    mean (and `<metric>_n`, `<metric>_low`, `<metric>_high` where present)."""
    flat = []
    for key, categories in table.items():
        for value, summary in categories.items():
            row: dict[str, Any] = {"group": key, "value": value, "n": summary["n"]}
            for metric, entry in summary["metrics"].items():
                row[metric] = entry["mean"]
                row |= {f"{metric}_{k}": v for k, v in entry.items() if k != "mean"}
            flat.append(row)
    return flat
