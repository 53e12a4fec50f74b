"""Visual reliance: how much of a score comes from the pictures (issue 11 item 6).

The same questions are scored three times: with their own images (`real`), with a mid-grey image of the
same size (`blank`), and with the image of another patient's question (`swapped`). The visual gain is real
minus blank and real minus swapped, overall and per question type. A model that answers from the pixels
loses most of its closed accuracy without them; a model that learnt the answer priors of the questions
(or was trained on blank images) keeps it, and its gain is near 0.

The swap is a seeded derangement across patients (`derangement`): no question is shown an image of its own
patient (or, where a release has no patient ids, its own image), so a swap can never hand back the right
picture by accident.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from medvqa.eval.breakdown import UNSET, summarize
from medvqa.eval.stats import paired_bootstrap_ci

MODES = ("blank", "swapped")
GAIN_METRICS = ("closed_acc", "closed_exact", "open_recall", "token_f1", "exact_match")


def derangement(groups: Sequence[str], seed: int = 0) -> list[int]:
    """A permutation `p` of range(n) with groups[p[i]] != groups[i] for every i (item i is shown the image
    of item p[i]); a pure function of (groups, seed).

    How: groups in a seeded random order, items shuffled within each, laid out one group after another;
    position k takes the item m positions further on (cyclically), m = the largest group's size. A group
    occupies at most m consecutive positions, so a shift by m always leaves it; when m <= n / 2 the wrap
    around the end cannot come back into it either. Raises ValueError when one group holds more than half
    of the items (no such permutation exists then)."""
    n = len(groups)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    largest = max((len(v) for v in members.values()), default=0)
    if n and 2 * largest > n:
        raise ValueError(
            f"eval.visual_reliance=true: one patient/image holds {largest} of the split's {n} questions, more "
            "than half, so images cannot be swapped between patients; evaluate a larger split (data.limit)"
        )
    rng = random.Random(seed)
    order = sorted(members)
    rng.shuffle(order)
    layout = []
    for g in order:
        items = list(members[g])
        rng.shuffle(items)
        layout += items
    perm = [0] * n
    for k, i in enumerate(layout):
        perm[i] = layout[(k + largest) % n]
    return perm


def _means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {m: e["mean"] for m, e in summarize(rows)["metrics"].items() if m in GAIN_METRICS}


def _gain(real: Mapping[str, float], other: Mapping[str, float]) -> dict[str, float]:
    return {m: real[m] - other[m] for m in real if m in other}


def _closed(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {r["id"]: r["scores"]["closed_acc"] for r in rows if "closed_acc" in r.get("scores", {})}


def visual_gain(
    real: Sequence[Mapping[str, Any]],
    ablated: Mapping[str, Sequence[Mapping[str, Any]]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The visual-reliance record of metrics.json from prediction rows of the same questions scored with
    real images and under each ablation (`{"blank": rows, "swapped": rows}`): per-mode means of
    GAIN_METRICS, their gains (real minus mode), a paired bootstrap interval of the closed-accuracy gain,
    and the same per question type (with counts)."""
    scores = {"real": _means(real)} | {mode: _means(rows) for mode, rows in ablated.items()}
    record: dict[str, Any] = {
        "scores": scores,
        "gain": {m: _gain(scores["real"], scores[m]) for m in ablated},
    }
    ours = _closed(real)
    record["closed_acc_gain_ci"] = {}
    for mode, rows in ablated.items():
        theirs = _closed(rows)
        shared = [k for k in ours if k in theirs]
        if shared:  # mean(real - ablated): the paired interval of the gain
            ci = paired_bootstrap_ci([theirs[k] for k in shared], [ours[k] for k in shared], n_boot, seed)
            record["closed_acc_gain_ci"][mode] = ci
    record["by_question_type"] = by_question_type(real, ablated)
    return record


def by_question_type(
    real: Sequence[Mapping[str, Any]], ablated: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """{question type: {"n", "real": means, mode: means, "gain_<mode>": gains}}, largest types first."""

    def groups(rows):
        out = defaultdict(list)
        for row in rows:
            out[str(row.get("question_type") or UNSET)].append(row)
        return out

    real_groups = groups(real)
    other = {mode: groups(rows) for mode, rows in ablated.items()}
    table = {}
    for qtype, rows in sorted(real_groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        entry: dict[str, Any] = {"n": len(rows), "real": _means(rows)}
        for mode in ablated:
            entry[mode] = _means(other[mode].get(qtype, []))
            entry[f"gain_{mode}"] = _gain(entry["real"], entry[mode])
        table[qtype] = entry
    return table
