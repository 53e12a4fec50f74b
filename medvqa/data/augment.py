"""Training-split image augmentation with albumentations, aware of laterality.

A question or answer that mentions left or right is only true of the picture as it is: a horizontal
flip (or a transpose, a 90/180-degree turn, a D4 symmetry) would swap the sides and make the answer
wrong. For such samples those transforms are dropped from the pipeline; everything else still applies.
The datamodule applies an `Augment` to the train split only; val and test images are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from PIL import Image

from medvqa.data.sample import VQASample

# Words whose meaning a mirror image reverses. `right` as a whole word only: not "upright", "bright".
LATERAL_WORDS = re.compile(
    r"\b(left|right|leftward|rightward|sinistral|dextral|levo\w*|dextro\w*|"
    r"contralateral|ipsilateral|laterality)\b",
    re.IGNORECASE,
)
# Transforms that move left/right: mirror images and turns past the horizontal axis.
SIDE_SWAPPING: tuple[type, ...] = (A.HorizontalFlip, A.Transpose, A.RandomRotate90, A.D4)


def mentions_side(sample: VQASample) -> bool:
    return bool(LATERAL_WORDS.search(sample.question) or LATERAL_WORDS.search(sample.answer))


def _swaps_sides(transform) -> bool:
    if isinstance(transform, SIDE_SWAPPING):
        return True
    # Rotate / SafeRotate (`limit`) and Affine (`rotate`): a turn of 90 degrees or more moves the sides
    angles = getattr(transform, "limit", None) if isinstance(transform, A.Rotate | A.SafeRotate) else None
    if isinstance(transform, A.Affine):
        angles = transform.rotate
    return angles is not None and max(abs(float(v)) for v in np.atleast_1d(angles)) >= 90


class Augment:
    """`augment(image, sample) -> image` for the train split: `transforms` (albumentations, usually
    instantiated by Hydra from conf/augment/*.yaml) in order; side-swapping ones are skipped when
    `laterality_aware` and the sample mentions a side.

    Seeded: `seed` in the main process; in a DataLoader worker, the worker's own torch seed (distinct
    per worker and epoch, and fixed by the run's seed), so workers never repeat each other's draws.
    """

    def __init__(self, transforms: Sequence = (), laterality_aware: bool = True, seed: int = 0):
        self.transforms = list(transforms)
        self.laterality_aware = laterality_aware
        self.seed = seed
        self.full = A.Compose(self.transforms, seed=seed)
        self.side_safe = A.Compose([t for t in self.transforms if not _swaps_sides(t)], seed=seed)
        self._seeded_for: int | None = None

    def pipeline(self, sample: VQASample) -> A.Compose:
        return self.side_safe if self.laterality_aware and mentions_side(sample) else self.full

    def __call__(self, image: Image.Image, sample: VQASample) -> Image.Image:
        if not self.transforms:
            return image
        self._reseed_in_worker()
        out = self.pipeline(sample)(image=np.asarray(image.convert("RGB")))["image"]
        return Image.fromarray(out)

    def _reseed_in_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        seed = self.seed if info is None else info.seed % 2**32
        if seed != self._seeded_for:
            self.full.set_random_seed(seed)
            self.side_safe.set_random_seed(seed)
            self._seeded_for = seed

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "none"
        return f"Augment([{names}], laterality_aware={self.laterality_aware})"
