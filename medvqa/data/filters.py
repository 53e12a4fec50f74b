"""Selecting samples by their fields (from config: `data.filters`, and per curriculum stage), and drawing
`data.limit` rows spread over patients."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medvqa.data.sample import VQASample

FIELDS = ("answer_type", "question_type", "organ", "modality", "plane", "source", "split", "patient_id")


def _value(sample: VQASample, key: str) -> Any:
    if key in FIELDS:
        return getattr(sample, key)
    if key in sample.extra:
        return sample.extra[key]
    raise KeyError(key)


def select(
    samples: Iterable[VQASample], filters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
) -> list[VQASample]:
    """Keep samples matching every filter. A filter value is one value or a list of accepted values;
    `ids` takes a list of sample ids; other keys look in `sample.extra` (e.g. `complexity`).
    String matching ignores case; a question_type like 'PRES, POS' matches either part.
    A list of filter mappings keeps samples matching any of them, in their original order (a cumulative
    curriculum stage: its own subset plus the earlier stages')."""
    samples = list(samples)
    if isinstance(filters, Sequence) and not isinstance(filters, str):
        kept = {id(s) for f in filters for s in select(samples, f)}
        return [s for s in samples if id(s) in kept]
    for key, wanted in (filters or {}).items():
        if wanted is None:
            continue
        accepted = {_norm(w) for w in (wanted if isinstance(wanted, list | tuple | set) else [wanted])}
        if key == "ids":
            samples = [s for s in samples if s.id in {str(w) for w in wanted}]
            continue
        try:
            samples = [s for s in samples if _parts(_value(s, key)) & accepted]
        except KeyError:
            raise KeyError(
                f"data.filters.{key}: unknown field; use one of {', '.join(FIELDS)}, ids, or a key of sample.extra"
            ) from None
    return samples


def _norm(value: Any) -> str:
    return str(value).strip().lower()


def _parts(value: Any) -> set[str]:
    text = _norm(value)
    return {text} | {p.strip() for p in text.replace("/", ",").split(",") if p.strip()}


def spread(samples: Sequence[VQASample], n: int | None, seed: int = 0) -> list[VQASample]:
    """`n` of `samples` drawn over as many patients (groups), and within a patient as many images, as `n`
    allows: patients in a seeded order, one question from each in turn, each patient cycling through its
    images, each image's questions drawn in a seeded order. Returned in their original order; all of them
    when `n` is None or `n >= len(samples)` (`data.limit={train: null}` caps nothing)."""
    if n is None or n >= len(samples):
        return list(samples)
    rng = random.Random(seed)
    patients: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        patients[s.group][s.image_key].append(i)
    queues = []
    for group in sorted(patients):
        images = [rows for _, rows in sorted(patients[group].items())]
        for rows in images:  # an image's questions in a seeded order too: the release lists them by type
            rng.shuffle(rows)
        rng.shuffle(images)
        queues.append(deque(_interleave(images)))
    rng.shuffle(queues)
    chosen: list[int] = []
    while len(chosen) < n:
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.popleft())
        queues = [q for q in queues if q]
    return [samples[i] for i in sorted(chosen)]


def _interleave(lists: list[list[int]]) -> list[int]:
    """[[a1, a2], [b1]] -> [a1, b1, a2]: one from each list in turn."""
    out, depth = [], max(map(len, lists))
    for k in range(depth):
        out += [rows[k] for rows in lists if k < len(rows)]
    return out
