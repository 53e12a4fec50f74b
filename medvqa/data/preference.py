"""Preference pairs for DPO, all drawn from the run's datamodule (its root, its training split, its images):

1. `file`: a JSONL of explicit pairs, one object per line:
   `{"image": "path/under/data.root.jpg", "question": "...", "chosen": "...", "rejected": "..."}`
   with optional `"answer_type"` (`closed` / `open`, else inferred: yes/no answers are closed) and `"id"`;
2. `mined`: from the labels of the training split. Closed questions are rejected with the opposite answer
   (yes<->no, left<->right, ...); open ones (and closed ones without an opposite) with another answer of the
   same question type and organ (else the same question type) from the training split;
3. `on_policy`: the current model's own wrong answers, generated when the training loader is built (every
   epoch with trainer.reload_dataloaders_every_n_epochs=1).
A training sample with an on-policy wrong answer uses it; otherwise its mined pair (when `mined` is on).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from medvqa.answers import normalize
from medvqa.data.collate import VQACollator, empty_batch
from medvqa.data.errors import BadSamples, DataError, resolve_inside
from medvqa.data.sample import VQASample, infer_answer_type

log = logging.getLogger(__name__)
SOURCES = ("file", "mined", "on_policy")
# word-level opposites for closed answers; a multi-word answer swaps every word that has one
OPPOSITES = {"yes": "no", "left": "right", "present": "absent", "normal": "abnormal", "true": "false",
             "upper": "lower", "anterior": "posterior", "increased": "decreased", "single": "multiple",
             "benign": "malignant", "medial": "lateral", "superior": "inferior"}  # fmt: skip
OPPOSITES |= {v: k for k, v in OPPOSITES.items()}
PAIR_KEYS = ("image", "question", "chosen", "rejected")


@dataclass
class Pair:
    sample: VQASample  # image, question and the chosen answer (sample.answer)
    rejected: str
    source: str  # file | mined | on_policy


def opposite(answer: str) -> str | None:
    """The answer with every word that has an opposite swapped ("Left lung" -> "Right lung", "YES." -> "NO.");
    None if none has. Everything else (case, punctuation, spacing) is kept as the release spells it, so
    chosen and rejected differ only in meaning."""

    def swap(m: re.Match) -> str:
        word = m.group()
        return _same_case(OPPOSITES[word.lower()], word) if word.lower() in OPPOSITES else word

    swapped = _WORD.sub(swap, answer)
    return swapped if swapped != answer else None


_WORD = re.compile(r"[A-Za-z]+")


def _same_case(word: str, like: str) -> str:
    """`word` written in the case of `like`: UPPER, Capitalised or lower."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word.capitalize() if like[0].isupper() else word.lower()


def mine_pairs(samples: list[VQASample], seed: int = 0) -> tuple[list[Pair], int]:
    """One mined pair per training sample that has a rejection (see module docstring), and how many had none.
    Deterministic: the choice for a sample depends only on `seed` and its id."""
    by_type_organ, by_type = defaultdict(dict), defaultdict(dict)
    for s in samples:  # distinct answers (by normalised text), first spelling kept
        by_type_organ[(s.question_type, s.organ)].setdefault(normalize(s.answer), s.answer)
        by_type[s.question_type].setdefault(normalize(s.answer), s.answer)
    pairs, missing = [], 0
    for s in samples:
        rejected = opposite(s.answer) if s.answer_type == "closed" else None
        if rejected is None:
            truth = normalize(s.answer)
            for pool in (by_type_organ[(s.question_type, s.organ)], by_type[s.question_type]):
                others = sorted(a for norm, a in pool.items() if norm != truth)
                if others:
                    rejected = random.Random(f"{seed}:{s.id}").choice(others)
                    break
        if rejected is None:
            missing += 1
        else:
            pairs.append(Pair(s, rejected, "mined"))
    return pairs, missing


def read_pairs_file(path: str | Path, root: str | Path, bad: BadSamples | None = None) -> list[Pair]:
    """Explicit pairs from JSONL (format in the module docstring); images are paths under data.root."""
    path, bad = Path(path), bad or BadSamples()
    if not path.is_file():
        raise DataError(f"stage.pairs_file={path} does not exist; give a JSONL of "
                        f"{{image, question, chosen, rejected}} objects (see docs/stages.md)")  # fmt: skip
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        pair = _parse_pair(line, where, Path(root), bad)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _parse_pair(line: str, where: str, root: Path, bad: BadSamples) -> Pair | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        bad.report(where, "not valid JSON", f"Each line must be one JSON object ({e}).")
        return None
    missing = [k for k in PAIR_KEYS if not isinstance(row, dict) or not str(row.get(k, "")).strip()]
    if missing:
        bad.report(
            where,
            "pair misses keys",
            f"Missing or empty: {', '.join(missing)}; needs {', '.join(PAIR_KEYS)}.",
        )
        return None
    chosen, rejected = str(row["chosen"]).strip(), str(row["rejected"]).strip()
    if normalize(chosen) == normalize(rejected):
        bad.report(where, "chosen equals rejected", "A pair needs two different answers.")
        return None
    try:
        image = resolve_inside(root, str(row["image"]))
    except DataError as e:
        bad.report(where, "image path escapes data.root", str(e))
        return None
    if not image.is_file():
        bad.report(where, "image file not found", f"Expected {image} (paths are relative to data.root).")
        return None
    kind = str(row.get("answer_type") or infer_answer_type(chosen)).lower()
    sample = VQASample(id=str(row.get("id") or where), image=str(image), question=str(row["question"]).strip(),
                       answer=chosen, answer_type="closed" if kind == "closed" else "open", origin=where)  # fmt: skip
    return Pair(sample, rejected, "file")


class PairDataset(Dataset):
    """Items `{"sample", "image", "rejected", "source"}`: one image per pair, shared by both answers."""

    def __init__(self, pairs: list[Pair], images: Dataset):
        self.pairs, self.images = pairs, images  # images[i] opens pairs[i].sample's image

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.images[i] | {"rejected": self.pairs[i].rejected, "source": self.pairs[i].source}


class PairCollator:
    """Collates pairs as 2B rows through the VQA collator: rows 0..B-1 carry the chosen answers, rows B..2B-1
    the rejected ones, with the same images and prompts; labels mask all but the answer tokens in both."""

    def __init__(self, base: VQACollator):
        self.base = base

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        n_skipped = sum(item["image"] is None for item in items)
        items = [item for item in items if item["image"] is not None]
        if not items:  # every image unreadable: the stage skips it (medvqa/data/collate.py is_empty)
            batch = empty_batch(n_skipped)
            batch["meta"] |= {"rejected": [], "source": []}
            return batch
        chosen = [{"sample": it["sample"], "image": it["image"]} for it in items]
        rejected = [
            {"sample": replace(it["sample"], answer=it["rejected"]), "image": it["image"]} for it in items
        ]
        batch = self.base(chosen + rejected)
        n = len(items)
        batch["meta"] = {k: v[:n] for k, v in batch["meta"].items()}
        batch["meta"] |= {
            "rejected": [it["rejected"] for it in items],
            "source": [it["source"] for it in items],
        }
        batch["n_skipped"] = n_skipped
        return batch


class PreferenceSet:
    """Builds the DPO training loader from a datamodule's training split and the configured sources.

    `answer_fn(samples) -> answers` (set by the DPO stage) generates the current model's answers for the
    `on_policy` source; it is called each time the training loader is built."""

    def __init__(self, sources: list[str] | tuple[str, ...] = ("mined",), pairs_file: str | None = None,
                 on_policy_limit: int | None = 512, seed: int = 0):  # fmt: skip
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise ValueError(f"stage.sources={list(sources)}: choose one or more of {', '.join(SOURCES)}")
        if "file" in sources and not pairs_file:
            raise ValueError(
                "stage.sources includes 'file' but stage.pairs_file is not set; give the JSONL path"
            )
        self.sources, self.pairs_file = tuple(sources), pairs_file
        self.on_policy_limit, self.seed = on_policy_limit, seed
        self.answer_fn: Callable[[list[VQASample]], list[str]] | None = None
        self.rounds = 0  # loaders built so far: varies the on-policy subset from epoch to epoch
        self.counts: Counter[str] = Counter()

    def build(self, train: list[VQASample], root: str | Path, bad: BadSamples | None = None) -> list[Pair]:
        """The pairs for one epoch (file pairs first, then one pair per training sample that has one)."""
        pairs = read_pairs_file(self.pairs_file, root, bad) if "file" in self.sources else []
        per_sample: dict[str, Pair] = {}
        if "mined" in self.sources:
            mined, missing = mine_pairs(train, self.seed)
            per_sample |= {p.sample.id: p for p in mined}
            if missing:
                log.info("preference: %d training samples have no mined rejection", missing)
        if "on_policy" in self.sources:
            per_sample |= {p.sample.id: p for p in self.on_policy_pairs(train)}
        pairs += [per_sample[s.id] for s in train if s.id in per_sample]
        self.counts = Counter(p.source for p in pairs)
        if not pairs:
            raise DataError(f"stage.sources={list(self.sources)} gave no preference pairs from "
                            f"{len(train)} training samples")  # fmt: skip
        log.info("preference pairs: %s", dict(self.counts))
        return pairs

    def on_policy_pairs(self, train: list[VQASample]) -> list[Pair]:
        """Pairs whose rejected answer is the model's own wrong answer, on up to `on_policy_limit` samples."""
        if self.answer_fn is None:
            raise RuntimeError("the on_policy source needs the stage to set PreferenceSet.answer_fn")
        chosen = list(train)
        if self.on_policy_limit is not None and len(chosen) > self.on_policy_limit:
            chosen = random.Random(f"{self.seed}:{self.rounds}").sample(chosen, self.on_policy_limit)
        self.rounds += 1
        answers = self.answer_fn(chosen)
        return [
            Pair(s, a, "on_policy")
            for s, a in zip(chosen, answers, strict=True)
            if a.strip() and normalize(a) != normalize(s.answer)
        ]

    def loader(self, datamodule) -> DataLoader:
        """The training loader over this epoch's pairs, with the datamodule's batch size, workers and images."""
        from medvqa.data.datamodule import VQADataset

        dm, hp = datamodule, datamodule.hparams
        pairs = self.build(dm.splits["train"], dm.root, dm.bad)
        # one (augmented) image per pair: chosen and rejected answers see the same pixels
        samples = [p.sample for p in pairs]
        images = VQADataset(samples, hp.max_image_side, hp.on_bad_sample, hp.blank_images, dm.augment, hp.window,
                            frame=hp.dicom_frame)  # fmt: skip
        return DataLoader(
            PairDataset(pairs, images),
            batch_size=dm.batch_size,
            shuffle=True,
            num_workers=hp.num_workers,
            collate_fn=PairCollator(dm.collator()),
            persistent_workers=hp.num_workers > 0,
            generator=torch.Generator().manual_seed(hp.seed + self.rounds),
        )
