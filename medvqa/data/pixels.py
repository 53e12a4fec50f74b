"""High-bit-depth images to the 8-bit RGB a vision-language processor takes: DICOM and 16-bit PNG/TIFF.

DICOM: one frame (`data.dicom_frame`: middle, first or N) is decoded, never the whole volume -> stored
values -> modality units with Rescale Slope/Intercept (HU for CT) -> a window (the one given in
`data.window`, else the file's stored Window Center/Width, else the image's own min..max) -> 0..255.
MONOCHROME1 (white = low) is inverted so every image reads bright = high; PALETTE COLOR goes through its
palette; colour deeper than 8 bits is scaled by its Bits Stored. 16-bit PNG/TIFF have no rescale or stored
window, so they go through the same window step with the configured window or min..max.

Every failure while reading a DICOM file is a DataError with a one-line reason naming the file; pydicom's
own log lines and warnings are kept out of the user's terminal while it decodes (see `quiet_pydicom`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from medvqa.data.errors import DataError

Window = (
    Sequence[float] | None
)  # (center, width) in modality units, e.g. (40, 400) for a CT soft-tissue window
DicomFrame = str | int  # "middle" | "first" | N (1-based, as DICOM numbers frames)
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
# What decoding one DICOM image may hold at once, checked before any pixel is decoded: one decoded frame
# (rows x columns x samples x bytes), or, where pydicom must read the whole file to find that frame, the
# file. 1 GiB is 8192 x 8192 RGB at 16 bits with room to spare.
MAX_DECODE_BYTES = 2**30
REASON_CHARS = 300  # a skip reason is one line: pydicom's longest messages are cut here
NOT_FOR_USERS = ("Use force=True to force reading.",)  # pydicom's advice to programmers, not to users


def to_uint8(values: np.ndarray, window: Window, overwrite: bool = False) -> np.ndarray:
    """Linear window to 0..255: center - width/2 -> 0, center + width/2 -> 255, clipped outside.
    Without a window, the image's own min..max (a constant image becomes 0). `overwrite`: a float64
    `values` is worked on in place (one float copy of a frame is held, not four)."""
    keep = overwrite and values.dtype == np.float64
    values = values if keep else values.astype(np.float64)
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
    np.clip(values, low, high, out=values)
    values -= low
    values /= high - low
    values *= 255.0
    return np.round(values, out=values).astype(np.uint8)


def stored_window(ds) -> tuple[float, float] | None:
    """The first Window Center/Width pair a DICOM file stores (both may be multi-valued), if any."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    first = lambda v: float(v[0]) if isinstance(v, Sequence) and not isinstance(v, str) else float(v)  # noqa: E731
    return first(center), first(width)


def check_frame(frame: DicomFrame) -> DicomFrame:
    """`data.dicom_frame` as given, once checked: "middle", "first" or a frame number from 1."""
    if frame in ("middle", "first"):
        return frame
    if isinstance(frame, str) and frame.strip().isdigit():
        frame = int(frame)
    if isinstance(frame, int) and not isinstance(frame, bool) and frame >= 1:
        return frame
    raise ValueError(f"data.dicom_frame={frame!r}: use middle, first or a frame number from 1 (e.g. 3)")


def frame_index(frame: DicomFrame, frames: int, name: str) -> int:
    """The 0-based index of the frame `frame` names in a file of `frames` frames."""
    frame = check_frame(frame)
    if frame == "middle":
        return frames // 2
    if frame == "first":
        return 0
    if frame > frames:
        raise DataError(f"{name}: data.dicom_frame={frame} but the file has {frames} frame(s)")
    return frame - 1


def one_line(error: BaseException) -> str:
    """An exception's message as one line without pydicom's programmer advice, at most REASON_CHARS."""
    text = " ".join(str(error).split()) or type(error).__name__
    for advice in NOT_FOR_USERS:
        text = text.replace(advice, "").strip()
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3].rstrip() + "..."


class _Decoding(logging.Filter):
    """Drops pydicom's log records made by a thread while it is decoding (its plugin tracebacks, its
    [ERROR] lines): the one-line DataError says what went wrong. Other threads keep their log."""

    active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.active, "on", False)


_FILTER = _Decoding()


@contextlib.contextmanager
def quiet_pydicom():
    """Within: pydicom's log records of this thread are dropped, and its warnings ignored (about files that
    are decoded anyway or skipped with their one-line reason, so a user has nothing to act on)."""
    # a logger's filter sees only its own records, not its children's: so on every pydicom logger
    names = [n for n in logging.root.manager.loggerDict if n == "pydicom" or n.startswith("pydicom.")]
    for logger in map(logging.getLogger, names):
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    # warnings filters are process-wide; this one only ever silences pydicom's own modules
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    _Decoding.active.on = True
    try:
        yield
    finally:
        _Decoding.active.on = False


def is_dicom_bytes(head: bytes) -> bool:
    """True for the start of a DICOM file: the 'DICM' marker after its 128-byte preamble."""
    return head[128:132] == b"DICM"


def is_dicom_file(path: Path) -> bool:
    """True when the file at `path` is DICOM by content, whatever its name (a CD export's `2062`)."""
    try:
        with open(path, "rb") as f:
            return is_dicom_bytes(f.read(132))
    except OSError:
        return False


def read_dicom(source: Path | BinaryIO, name: str, window: Window = None, max_pixels: int | None = None,
               frame: DicomFrame = "middle") -> Image.Image:  # fmt: skip
    """One frame of a DICOM file (a path or an open binary file; `name` for messages) as 8-bit RGB.

    Raises DataError with a one-line reason for anything that goes wrong: not DICOM, no pixel data, over
    `max_pixels` per frame or MAX_DECODE_BYTES, no decoder, a corrupt stream."""
    with quiet_pydicom():
        header = _header(source, name)
        try:
            stored = _frame(source, header, name, max_pixels, frame)
            return render(stored, header, window)
        except DataError:
            raise
        except Exception as e:  # pydicom and its plugins raise many types for one undecodable image
            raise DataError(
                f"{name}: cannot decode DICOM pixel data ({_syntax(header)}): {one_line(e)}"
            ) from e


def _header(source: Path | BinaryIO, name: str):
    import pydicom

    try:
        return pydicom.dcmread(_rewound(source), stop_before_pixels=True)
    except Exception as e:
        raise DataError(f"{name}: not a readable DICOM file: {one_line(e)}") from e


def _rewound(source: Path | BinaryIO) -> Path | BinaryIO:
    if hasattr(source, "seek"):
        source.seek(0)
    return source


def _syntax(header) -> str:
    """The transfer syntax's name, or what is missing instead (the error handler must not raise)."""
    uid = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    return getattr(uid, "name", None) or str(uid or "no transfer syntax in the file meta")


def _frame(source: Path | BinaryIO, header, name: str, max_pixels: int | None, frame: DicomFrame):
    """The stored values of the one frame `frame` names, refused before decoding when over the limits."""
    from pydicom.pixels import pixel_array

    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if max_pixels is not None and rows * cols > max_pixels:
        raise DataError(f"{name}: {cols}x{rows} pixels is over the {max_pixels} limit")
    samples, bits = int(header.get("SamplesPerPixel", 1) or 1), int(header.get("BitsAllocated", 8) or 8)
    frame_bytes = rows * cols * samples * max(bits // 8, 1)
    if frame_bytes > MAX_DECODE_BYTES:
        raise DataError(f"{name}: one {cols}x{rows} frame of {samples} x {bits} bits is {frame_bytes} "
                        f"bytes, over the {MAX_DECODE_BYTES} limit")  # fmt: skip
    index = frame_index(frame, frames, name)
    try:  # reads only that frame's bytes from the file
        return pixel_array(_rewound(source), index=index)
    except Exception:  # a deflated file, an unusual encapsulation: pydicom needs the whole dataset
        pass
    size = _size(source)
    if size > MAX_DECODE_BYTES:
        raise DataError(f"{name}: the file's {size} bytes must be read whole to decode it, over the "
                        f"{MAX_DECODE_BYTES} limit")  # fmt: skip
    import pydicom

    ds = pydicom.dcmread(_rewound(source))
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(f"{name}: holds no image (no Pixel Data: a DICOM report, plan or structure set?)")
    return pixel_array(ds, index=index)


def _size(source: Path | BinaryIO) -> int:
    if hasattr(source, "seek"):
        return source.seek(0, os.SEEK_END)
    return Path(source).stat().st_size


def render(stored: np.ndarray, header, window: Window) -> Image.Image:
    """One decoded frame as 8-bit RGB (see the module docstring for each step)."""
    photometric = str(header.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(stored, header)  # uint8 or uint16, as the palette's entries are
        return Image.fromarray(_scaled(rgb, 8 * rgb.dtype.itemsize)).convert("RGB")
    if stored.ndim == 3:  # RGB, or YBR that pydicom has already converted to RGB
        depth = int(header.get("BitsStored", 8) or 8)
        return Image.fromarray(_scaled(stored, depth)).convert("RGB")
    window = window if window is not None else stored_window(header)
    grey = to_uint8(modality_values(stored, header), window, overwrite=True)
    if photometric == "MONOCHROME1":
        np.subtract(255, grey, out=grey)
    return Image.fromarray(grey).convert("RGB")


def _scaled(colour: np.ndarray, depth: int) -> np.ndarray:
    """Colour samples of `depth` bits to 0..255 (0 -> 0, 2**depth - 1 -> 255), not wrapped around."""
    if depth <= 8 and colour.dtype == np.uint8:
        return colour
    top = float(2**depth - 1)
    values = np.clip(colour, 0, top).astype(np.float64)
    values *= 255.0 / top
    return np.round(values, out=values).astype(np.uint8)


def modality_values(stored: np.ndarray, header) -> np.ndarray:
    """Stored values in modality units (HU for CT). A Modality LUT goes through pydicom's apply_modality_lut;
    the common linear rescale is done here in place, because apply_modality_lut holds two float64 copies of
    the frame at once (70 MB for a 2048 x 2048 slice)."""
    if "ModalityLUTSequence" in header:
        from pydicom.pixels import apply_modality_lut

        return apply_modality_lut(stored, header)
    values = stored.astype(np.float64)
    if "RescaleSlope" in header and "RescaleIntercept" in header:
        values *= float(header.RescaleSlope)
        values += float(header.RescaleIntercept)
    return values


def high_bit_to_rgb(img: Image.Image, window: Window = None) -> Image.Image:
    """A 16-bit or float PIL image (PNG/TIFF) windowed to 8-bit RGB, as DICOM values are."""
    return Image.fromarray(to_uint8(np.asarray(img), window)).convert("RGB")
