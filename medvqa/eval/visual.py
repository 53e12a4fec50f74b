"""Visual reliance: how much of a score comes from the pictures.

The same questions are scored four times: with their own images (`real`, always the reference, even for a
run trained with data.blank_images=true), with a mid-grey image of the same size (`blank`), with the image
of another patient's question (`swapped`), and with no image at all (`none`: the prompt without image
tokens, question only). Reported overall and per question type:
- the visual gain of each condition: real minus it;
- the visual reliance score: real minus the best image-free condition (max of blank and none), so a model
  that answers as well without any picture scores 0 whichever way the picture is removed;
- image sensitivity: the share of answers that change when the image is blanked or swapped (either).
Intervals resample clusters (the patient, else the image; eval.ci_unit) jointly across conditions. A model
that answers from the pixels loses most of its closed accuracy without them; one that learnt the answer
priors of the questions keeps it, and its reliance is near 0.

The swap is a seeded derangement across patients (`derangement`): no question is shown an image of its own
patient (or, where a release has no patient ids, its own image), so a swap can never hand back the right
picture by accident.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medvqa.answers import normalize
from medvqa.eval.breakdown import UNSET, summarize
from medvqa.eval.stats import N_BOOT, bootstrap_ci, joint_bootstrap, paired_bootstrap_ci, row_clusters

MODES = ("blank", "swapped", "none")
IMAGE_FREE = ("blank", "none")  # the conditions without any picture of the question's patient
CHANGED_BY = ("blank", "swapped")  # image sensitivity: does the answer change with the picture
# what each condition shows, recorded beside the numbers
IMAGES = {"real": "the question's own image", "blank": "a mid-grey image of the same size",
          "swapped": "another patient's image (seeded derangement)",
          "none": "no image: the prompt without image tokens"}  # fmt: skip
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


def _by_id(rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["id"]): r for r in rows}


def reliance_ci(real, ablated, clusters, unit: str, n_boot: int, seed: int) -> dict[str, Any] | None:
    """Interval of closed_acc(real) - max(closed_acc(blank), closed_acc(none)) over the closed questions
    every condition scored: each replicate resamples the same clusters for all three conditions and takes
    the max inside the replicate (the best image-free condition is chosen on the resample too)."""
    free = [m for m in IMAGE_FREE if m in ablated]
    tables = [_by_id(real)] + [_by_id(ablated[m]) for m in free]
    ids = [i for i, r in tables[0].items() if "closed_acc" in r["scores"]
           and all("closed_acc" in t.get(i, {}).get("scores", {}) for t in tables[1:])]  # fmt: skip
    if not free or not ids:
        return None
    columns = [np.array([float(t[i]["scores"]["closed_acc"]) for i in ids]) for t in tables]
    keep = [clusters[i] for i in ids] if clusters is not None else None
    boot = joint_bootstrap(columns, keep, n_boot, seed)  # (n_boot, 1 + len(free))
    reps = boot[:, 0] - boot[:, 1:].max(axis=1)
    estimate = columns[0].mean() - max(c.mean() for c in columns[1:])
    low, high = np.percentile(reps, [2.5, 97.5])
    n_clusters = len(set(keep)) if keep is not None else len(ids)
    return {"mean": float(estimate), "low": float(low), "high": float(high), "n": len(ids), "n_boot": n_boot,
            "seed": seed, "confidence": 0.95, "unit": unit, "n_clusters": n_clusters,
            "best_image_free": free[int(np.argmax([c.mean() for c in columns[1:]]))]}  # fmt: skip


def sensitivity(real, ablated, clusters, unit: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Share of questions whose (normalised) answer changes when the image is blanked, swapped, and either
    (`any`), with cluster bootstrap intervals; over the questions every such condition answered."""
    modes = [m for m in CHANGED_BY if m in ablated]
    tables = [_by_id(ablated[m]) for m in modes]
    ids = [i for i in _by_id(real) if all(i in t for t in tables)]
    if not modes or not ids:
        return {}
    own = _by_id(real)
    changed = {m: [float(normalize(t[i]["prediction"]) != normalize(own[i]["prediction"])) for i in ids]
               for m, t in zip(modes, tables, strict=True)}  # fmt: skip
    changed["any"] = [float(any(changed[m][k] for m in modes)) for k in range(len(ids))]
    keep = [clusters[i] for i in ids] if clusters is not None else None
    return {m: bootstrap_ci(v, n_boot, seed, clusters=keep, unit=unit) for m, v in changed.items()}


def visual_gain(
    real: Sequence[Mapping[str, Any]],
    ablated: Mapping[str, Sequence[Mapping[str, Any]]],
    n_boot: int = N_BOOT,
    seed: int = 0,
    unit: str = "patient",
) -> dict[str, Any]:
    """The visual-reliance record of metrics.json from prediction rows of the same questions scored with
    real images and under each ablation (`{"blank": rows, "swapped": rows, "none": rows}`): per-condition
    means of GAIN_METRICS, their gains (real minus condition), the reliance score (real minus the best
    image-free condition) and image sensitivity, with cluster bootstrap intervals resampling `unit`
    (eval.ci_unit), and the same per question type (with counts)."""
    scores = {"real": _means(real)} | {mode: _means(rows) for mode, rows in ablated.items()}
    free = [m for m in IMAGE_FREE if m in ablated]
    record: dict[str, Any] = {
        "images": {m: IMAGES[m] for m in ("real", *ablated)},
        "scores": scores,
        "gain": {m: _gain(scores["real"], scores[m]) for m in ablated},
        "reliance": _reliance(scores, free),
    }
    record |= _intervals(real, ablated, n_boot, seed, unit)
    record["by_question_type"] = by_question_type(real, ablated, n_boot, seed, unit)
    return record


def _reliance(scores: Mapping[str, Mapping[str, float]], free: Sequence[str]) -> dict[str, float]:
    """Per metric: real minus the best image-free condition's mean."""
    real = scores["real"]
    return {
        m: real[m] - max(scores[f][m] for f in free)
        for m in real
        if free and all(m in scores[f] for f in free)
    }


def _intervals(real, ablated, n_boot: int, seed: int, unit: str) -> dict[str, Any]:
    """closed_acc_gain_ci per condition (paired cluster bootstrap), reliance_ci, sensitivity."""
    clusters_list, used = row_clusters(real, unit)
    clusters = dict(zip([str(r["id"]) for r in real], clusters_list, strict=True)) if clusters_list else None
    ours = {str(r["id"]): r["scores"]["closed_acc"] for r in real if "closed_acc" in r.get("scores", {})}
    gain_ci = {}
    for mode, rows in ablated.items():
        theirs = {
            str(r["id"]): r["scores"]["closed_acc"] for r in rows if "closed_acc" in r.get("scores", {})
        }
        shared = [k for k in ours if k in theirs]
        if shared:  # mean(real - ablated): the paired interval of the gain
            keep = [clusters[k] for k in shared] if clusters else None
            gain_ci[mode] = paired_bootstrap_ci([theirs[k] for k in shared], [ours[k] for k in shared], n_boot,
                                                seed, clusters=keep, unit=used)  # fmt: skip
    return {"closed_acc_gain_ci": gain_ci, "reliance_ci": reliance_ci(real, ablated, clusters, used, n_boot, seed),
            "sensitivity": sensitivity(real, ablated, clusters, used, n_boot, seed)}  # fmt: skip


def by_question_type(
    real: Sequence[Mapping[str, Any]],
    ablated: Mapping[str, Sequence[Mapping[str, Any]]],
    n_boot: int = N_BOOT,
    seed: int = 0,
    unit: str = "patient",
) -> dict[str, Any]:
    """{question type: {"n", "real": means, mode: means, "gain_<mode>": gains, "reliance",
    "reliance_ci", "sensitivity"}}, largest types first; intervals resample `unit` within the type."""

    def groups(rows):
        out = defaultdict(list)
        for row in rows:
            out[str(row.get("question_type") or UNSET)].append(row)
        return out

    real_groups = groups(real)
    other = {mode: groups(rows) for mode, rows in ablated.items()}
    free = [m for m in IMAGE_FREE if m in ablated]
    table = {}
    for qtype, rows in sorted(real_groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        entry: dict[str, Any] = {"n": len(rows), "real": _means(rows)}
        for mode in ablated:
            entry[mode] = _means(other[mode].get(qtype, []))
            entry[f"gain_{mode}"] = _gain(entry["real"], entry[mode])
        entry["reliance"] = _reliance(entry, free)
        mine = {mode: other[mode].get(qtype, []) for mode in ablated}
        intervals = _intervals(rows, mine, n_boot, seed, unit)
        entry |= {"reliance_ci": intervals["reliance_ci"], "sensitivity": intervals["sensitivity"]}
        table[qtype] = entry
    return table
