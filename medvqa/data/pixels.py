"""High-bit-depth images to the 8-bit RGB a vision-language processor takes: DICOM and 16-bit PNG/TIFF.

DICOM: stored values -> modality units with Rescale Slope/Intercept (HU for CT) -> a window (the one
given in `data.window`, else the file's stored Window Center/Width, else the image's own min..max) ->
0..255. MONOCHROME1 (white = low) is inverted so every image reads bright = high. 16-bit PNG/TIFF have no
rescale or stored window, so they go through the same window step with the configured window or min..max.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from medvqa.data.errors import DataError

Window = (
    Sequence[float] | None
)  # (center, width) in modality units, e.g. (40, 400) for a CT soft-tissue window
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def to_uint8(values: np.ndarray, window: Window) -> np.ndarray:
    """Linear window to 0..255: center - width/2 -> 0, center + width/2 -> 255, clipped outside.
    Without a window, the image's own min..max (a constant image becomes 0)."""
    values = values.astype(np.float64)
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if width <= 0:
            raise DataError(
                f"data.window={list(window)}: the width must be positive, e.g. data.window=[40,400]"
            )
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, low, high) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def stored_window(ds) -> tuple[float, float] | None:
    """The first Window Center/Width pair a DICOM file stores (both may be multi-valued), if any."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    first = lambda v: float(v[0]) if isinstance(v, Sequence) and not isinstance(v, str) else float(v)  # noqa: E731
    return first(center), first(width)


def read_dicom(
    source: Path | BinaryIO, name: str, window: Window = None, max_pixels: int | None = None
) -> Image.Image:
    """One DICOM file (a path or an open file; `name` for messages) as 8-bit RGB; first frame only."""
    import pydicom  # imported here: only DICOM users pay for it
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(source)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as e:
        raise DataError(f"{name}: not a readable DICOM file: {e}") from e
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if max_pixels is not None and rows * cols > max_pixels:  # refuse before decoding any pixel data
        raise DataError(f"{name}: {cols}x{rows} pixels is over the {max_pixels} limit")
    try:
        stored = ds.pixel_array
    except Exception as e:  # pydicom raises several types for missing decoders / bad pixel data
        raise DataError(
            f"{name}: cannot decode DICOM pixel data ({ds.file_meta.TransferSyntaxUID.name}): {e}"
        ) from e
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        stored = stored[0]
    if ds.get("PhotometricInterpretation", "") in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        return Image.fromarray(stored.astype(np.uint8)).convert("RGB")
    values = apply_modality_lut(stored, ds)
    grey = to_uint8(values, window if window is not None else stored_window(ds))
    if ds.get("PhotometricInterpretation", "") == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey).convert("RGB")


def high_bit_to_rgb(img: Image.Image, window: Window = None) -> Image.Image:
    """A 16-bit or float PIL image (PNG/TIFF) windowed to 8-bit RGB, as DICOM values are."""
    return Image.fromarray(to_uint8(np.asarray(img), window)).convert("RGB")
