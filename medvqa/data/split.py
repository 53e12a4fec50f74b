"""Seeded, group-aware splits: a patient (or, without patient ids, an image) is never on two sides."""

from __future__ import annotations

import random
from collections import defaultdict

from medvqa.data.sample import VQASample

SPLITS = ("train", "val", "test")


def carve(samples: list[VQASample], fraction: float, seed: int) -> tuple[list[VQASample], list[VQASample]]:
    """Move about `fraction` of the groups (not of the rows) out of `samples`: (kept, carved)."""
    groups = sorted({s.group for s in samples})
    random.Random(seed).shuffle(groups)
    n = round(len(groups) * fraction)
    if fraction > 0 and n == 0 and len(groups) > 1:
        n = 1
    out = set(groups[:n])
    return [s for s in samples if s.group not in out], [s for s in samples if s.group in out]


def make_splits(
    samples: list[VQASample],
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    split_by: str = "official",
) -> dict[str, list[VQASample]]:
    """Keep the release's own train/val/test (`split_by=official`) or ignore it (`group`); carve whatever
    split is missing from train, by group, seeded."""
    if split_by not in ("official", "group"):
        raise ValueError(f"data.split_by={split_by!r}; use 'official' (release split) or 'group' (re-split)")
    by_split: dict[str, list[VQASample]] = defaultdict(list)
    for s in samples:
        by_split[s.split if split_by == "official" and s.split in SPLITS else "train"].append(s)
    train = by_split["train"]
    if not by_split["test"]:
        train, by_split["test"] = carve(train, test_fraction, seed)
    if not by_split["val"]:
        train, by_split["val"] = carve(train, val_fraction / max(1e-9, 1 - test_fraction), seed + 1)
    splits = {"train": train, "val": by_split["val"], "test": by_split["test"]}
    for name, rows in splits.items():
        for s in rows:
            s.split = name
    return splits


def shared_groups(splits: dict[str, list[VQASample]]) -> dict[tuple[str, str], set[str]]:
    """Groups (patients / images) found on two sides, per pair of splits; empty when nothing leaks."""
    groups = {name: {s.group for s in rows} for name, rows in splits.items()}
    names = sorted(groups)
    overlap = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = groups[a] & groups[b]
            if common:
                overlap[(a, b)] = common
    return overlap
