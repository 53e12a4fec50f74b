"""Train-split sampling: mixture weights per source and length-grouped batches, separately or together;
or image-grouped batches (`data.group_by_image`: an image's questions adjacent, so the vision cache,
medvqa/models/vision_cache.py, encodes it once per batch).

torch gives weighted draws (`torch.multinomial`) and transformers gives length grouping
(`get_length_grouped_indices`: random mega-batches, each sorted by length), but neither sampler does
both at once, so this one composes the two library functions: draw an epoch's indices (by weight, or a
permutation), then reorder the drawn indices so each batch holds similar lengths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from medvqa.data.errors import DataError
from medvqa.data.sample import VQASample


def source_weights(samples: Sequence[VQASample], weights: Mapping[str, float]) -> list[float]:
    """Per-sample weights such that source s is drawn with probability w_s / sum(w): w_s / n_s each."""
    counts = Counter(s.source for s in samples)
    missing = sorted(set(counts) - set(weights))
    if missing:
        raise DataError(
            f"data.sampling_weights has no weight for source(s) {missing}; give every source in the train "
            f"split one, e.g. data.sampling_weights={{{', '.join(f'{k}: 1.0' for k in sorted(counts))}}}"
        )
    bad = {k: v for k, v in weights.items() if k in counts and not float(v) >= 0}
    if bad or not any(float(weights[k]) > 0 for k in counts):
        raise DataError(f"data.sampling_weights={dict(weights)}: weights must be >= 0 and not all 0")
    return [float(weights[s.source]) / counts[s.source] for s in samples]


def text_lengths(samples: Sequence[VQASample], tokenizer) -> list[int]:
    """Question + answer token counts: what varies between samples' sequence lengths. The chat template
    adds the same tokens to every sample and the image adds the same count at a fixed resolution."""
    questions = tokenizer([s.question for s in samples], add_special_tokens=False)["input_ids"]
    answers = tokenizer([s.answer for s in samples], add_special_tokens=False)["input_ids"]
    return [len(q) + len(a) for q, a in zip(questions, answers, strict=True)]


def group_by_image(drawn: Sequence[int], images: Sequence[Hashable]) -> list[int]:
    """`drawn` reordered so every image's draws are adjacent: images in the order of their first draw (a
    shuffled order when `drawn` is), each image's questions in their drawn order. A stable group-by no
    library sampler offers (transformers groups by length only)."""
    runs: dict[Hashable, list[int]] = {}
    for i in drawn:
        runs.setdefault(images[i], []).append(i)
    return [i for run in runs.values() for i in run]


class TrainSampler(Sampler[int]):
    """One epoch = `len(weights or lengths)` indices: drawn with replacement by `weights` (or a seeded
    permutation without), then grouped so consecutive `batch_size` runs have similar `lengths`, or, with
    `images` (one key per sample), so each image's questions follow each other (`group_by_image`)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        weights: Sequence[float] | None = None,
        lengths: Sequence[int] | None = None,
        seed: int = 0,
        images: Sequence[Hashable] | None = None,
    ):
        if lengths is not None and images is not None:
            raise ValueError(
                "data.group_by_length and data.group_by_image both reorder batches; switch one off"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.weights = torch.tensor(weights, dtype=torch.double) if weights is not None else None
        self.lengths = list(lengths) if lengths is not None else None
        self.images = list(images) if images is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # a fresh order next epoch even when nobody calls set_epoch
        if self.weights is not None:
            drawn = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        else:
            drawn = torch.randperm(self.n, generator=g).tolist()
        if self.images is not None:
            return iter(group_by_image(drawn, self.images))
        if self.lengths is None:
            return iter(drawn)
        order = get_length_grouped_indices([self.lengths[i] for i in drawn], self.batch_size, generator=g)
        return iter([drawn[i] for i in order])


def padding_share(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> float:
    """Pad tokens / all tokens when `order` is cut into batches of `batch_size` and each batch is padded to
    its longest sequence (what the collator does)."""
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return (padded - real) / padded if padded else 0.0
