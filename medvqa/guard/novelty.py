"""Image novelty: an image unlike every image the run was trained on is not answered, whatever is asked of
it. A model trained on one kind of image says something about any image ("Answer: x-ray" for a real CT
slice to a model trained on synthetic ones), with a confidence that means nothing there.

    novelty = NoveltyGuard.fit(train_images, val_images, quantile=0.99)
    verdict = novelty.check(image)    # NoveltyVerdict(novel=True, distance=7.9, threshold=2.1)

Each image (as the predictor decodes it: the run's data.max_image_side, data.window) becomes a vector of
simple intensity statistics (image_features): a 16-bin grey-level histogram, an 8 x 8 grey thumbnail, the
mean, spread, colourfulness and edge strength. Its distance to the training set is the Euclidean distance
to the nearest training image's vector, every feature scaled by its spread over the training images. The
threshold is the `quantile` of the same distance over the validation images (those not also training
images), so about 1 - quantile of images like the validation ones are flagged. Hand-written because no
installed library scores novelty on raw images without a downloaded feature model; numpy does the maths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

NOVEL_IMAGE = "novel_image"
NOVEL_TEXT = (
    "This image does not look like the images this model was trained on, so it cannot answer questions "
    "about it. Please ask your doctor or the clinic staff about your image."
)
MIN_SPREAD = 0.02  # a feature constant over the training images (a black border) still counts, but finitely
MIN_VALIDATION = 20  # fewer validation images than this: the threshold comes from the training images


def image_features(image: Image.Image) -> np.ndarray:
    """(84,) float32: grey histogram (16 bins), 8 x 8 thumbnail (64), mean, spread, colourfulness, edge
    strength. The image is first resized to 64 x 64, so the figures do not depend on its resolution."""
    rgb = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), np.float32) / 255.0
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    hist = np.histogram(grey, bins=16, range=(0.0, 1.0))[0].astype(np.float32) / grey.size
    thumb = grey.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel()  # 8 x 8 block means
    colour = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()
    edges = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    return np.concatenate([hist, thumb, [grey.mean(), grey.std(), colour, edges]]).astype(np.float32)


@dataclass(frozen=True)
class NoveltyVerdict:
    """`distance`: to the nearest training image (scaled features); `novel`: distance > threshold."""

    novel: bool
    distance: float
    threshold: float

    @property
    def reason(self) -> str:
        side = ">" if self.novel else "<="
        return f"image distance {self.distance:.2f} {side} {self.threshold:.2f} to the nearest training image"


class NoveltyGuard:
    """Nearest-neighbour distance of an image's features to the training images' features."""

    def __init__(self, train: np.ndarray, threshold: float, quantile: float | None = None,
                 max_side: int = 1024, window=None, frame="middle"):  # fmt: skip
        if len(train) == 0:
            raise ValueError("the novelty check needs the run's training images; the training split has none")
        self.mean = train.mean(axis=0)
        self.spread = np.maximum(train.std(axis=0), MIN_SPREAD)
        self.train = (train - self.mean) / self.spread
        self.threshold, self.quantile = float(threshold), quantile
        # how the run decodes a file (data.max_image_side, data.window, data.dicom_frame)
        self.max_side, self.window, self.frame = max_side, window, frame

    def distances(self, features: np.ndarray, leave_out_self: bool = False) -> np.ndarray:
        """(N,) distances of (N, D) feature rows to the nearest training row; `leave_out_self` skips a
        zero distance to the row itself (features of the training images themselves)."""
        z = ((np.atleast_2d(features) - self.mean) / self.spread).astype(np.float64)
        train = self.train.astype(np.float64)  # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: (N, M), never (N, M, D)
        square = (z**2).sum(1)[:, None] + (train**2).sum(1)[None, :] - 2.0 * z @ train.T
        d = np.sqrt(np.maximum(square, 0.0))
        if leave_out_self:
            d = np.where(d < 1e-6, np.inf, d)  # the row itself (rounding leaves ~1e-8, not 0)
        return d.min(axis=1)

    def check(self, image: Image.Image) -> NoveltyVerdict:
        distance = float(self.distances(image_features(image))[0])
        return NoveltyVerdict(distance > self.threshold, distance, self.threshold)

    def check_source(self, source, row: int | None = None, member: str = "") -> NoveltyVerdict | None:
        """`check` of a file path (with `row` / `member` for a parquet row or a zip member, as VQASample),
        bytes or PIL image, decoded as the run decodes it; None when it cannot be decoded (the predictor
        then reports or skips it, as for any bad input)."""
        from medvqa.data.images import load_image, open_image
        from medvqa.data.sample import VQASample

        try:
            if isinstance(source, (str, Path)):
                sample = VQASample(id="", image=str(source), question="", answer="", image_row=row,
                                   image_member=member)  # fmt: skip
                image = open_image(sample, self.max_side, self.window, self.frame)
            else:
                image = load_image(source, self.max_side, self.window, where="the image", frame=self.frame)
        except Exception:  # any decoding failure is the predictor's to report (data.on_bad_sample)
            return None
        return self.check(image)

    @classmethod
    def fit(cls, train_images: Iterable[Image.Image], val_images: Iterable[Image.Image],
            quantile: float = 0.99, max_side: int = 1024, window=None, frame="middle") -> NoveltyGuard:  # fmt: skip
        """Features of the training images; the threshold at `quantile` of the validation images'
        distances (or, with fewer than MIN_VALIDATION of them, of the training images' distances to the
        other training images)."""
        if not 0.0 < quantile <= 1.0:
            raise ValueError(
                f"guard.novelty_quantile={quantile}: use a quantile in (0, 1], or null for no check"
            )
        train = np.array([image_features(im) for im in train_images], np.float32).reshape(-1, 84)
        guard = cls(train, np.inf, quantile, max_side, window, frame)
        val = [image_features(im) for im in val_images]
        if len(val) >= MIN_VALIDATION:
            distances = guard.distances(np.stack(val))
        else:
            distances = guard.distances(train, leave_out_self=True)
        distances = distances[np.isfinite(distances)]
        guard.threshold = float(np.quantile(distances, quantile)) if len(distances) else np.inf
        return guard
