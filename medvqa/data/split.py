"""Seeded, group-aware splits: a patient (or, without patient ids, an image) is never on two sides."""

from __future__ import annotations

import random
from collections import defaultdict

from medvqa.data.sample import VQASample

SPLITS = ("train", "val", "test")


def carve(
    samples: list[VQASample],
    fraction: float,
    seed: int,
    prefer: frozenset[str] = frozenset(),
    avoid: frozenset[str] = frozenset(),
) -> tuple[list[VQASample], list[VQASample]]:
    """Move about `fraction` of the groups (not of the rows) out of `samples`: (kept, carved).

    In a mixture another source may already hold a group on one side: groups in `prefer` (on this side
    elsewhere) always go out, groups in `avoid` (on the other side elsewhere) only when nothing else is
    left, so a picture shared by two releases stays on one side."""
    groups = sorted({s.group for s in samples})
    random.Random(seed).shuffle(groups)
    n = round(len(groups) * fraction)
    if fraction > 0 and n == 0 and len(groups) > 1:
        n = 1
    ranked = sorted(
        groups, key=lambda g: 0 if g in prefer else 2 if g in avoid else 1
    )  # stable: seeded order
    out = set(ranked[: max(n, sum(g in prefer for g in groups))])
    return [s for s in samples if s.group not in out], [s for s in samples if s.group in out]


def make_splits(
    samples: list[VQASample],
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    split_by: str = "official",
) -> dict[str, list[VQASample]]:
    """Keep each source's own train/val/test (`split_by=official`) or ignore it (`group`); carve whatever
    split a source is missing from its train, by group, seeded. Sources are split one by one, so each
    source of a mixture gets its share of val and test."""
    if split_by not in ("official", "group"):
        raise ValueError(f"data.split_by={split_by!r}; use 'official' (release split) or 'group' (re-split)")
    by_source: dict[str, list[VQASample]] = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s)
        if split_by == "group" or s.split not in SPLITS:
            s.split = "train"
    # Sources that ship a split go first; each source's placement then steers the carving of the next,
    # so a picture two sources share (Kvasir-VQA and its x1) lands on the same side in both.
    placed: dict[str, set[str]] = {name: set() for name in SPLITS}
    parts: dict[str, dict[str, list[VQASample]]] = {}
    for source in sorted(by_source, key=lambda src: all(s.split == "train" for s in by_source[src])):
        parts[source] = _split_source(by_source[source], val_fraction, test_fraction, seed, placed)
        for name, rows in parts[source].items():
            placed[name].update(s.group for s in rows)
    splits = {name: [s for source in by_source for s in parts[source][name]] for name in SPLITS}
    for name, rows in splits.items():
        for s in rows:
            s.split = name
    return splits


def _split_source(samples, val_fraction, test_fraction, seed, placed) -> dict[str, list[VQASample]]:
    by_split: dict[str, list[VQASample]] = defaultdict(list)
    for s in samples:
        by_split[s.split].append(s)
    train = by_split["train"]
    if not by_split["test"]:
        prefer, avoid = frozenset(placed["test"]), frozenset(placed["train"] | placed["val"])
        train, by_split["test"] = carve(train, test_fraction, seed, prefer, avoid)
    if not by_split["val"]:
        prefer, avoid = frozenset(placed["val"]), frozenset(placed["train"] | placed["test"])
        fraction = val_fraction / max(1e-9, 1 - test_fraction)
        train, by_split["val"] = carve(train, fraction, seed + 1, prefer, avoid)
    return {"train": train, "val": by_split["val"], "test": by_split["test"]}


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
