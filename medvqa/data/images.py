"""Opening one image on demand: from a file, one row of a parquet file or one member of a zip archive
(bytes read and decoded lazily); DICOM and 16-bit images are windowed to 8 bits (see pixels.py)."""

from __future__ import annotations

import io
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from medvqa.data.errors import DataError
from medvqa.data.pixels import HIGH_BIT_MODES, Window, high_bit_to_rgb, read_dicom
from medvqa.data.sample import VQASample

# Refuse decompression bombs: PIL raises DecompressionBombError above 2x this, we refuse above 1x.
MAX_IMAGE_PIXELS = 8192 * 8192
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# A zip member this large is no single medical image: refuse before inflating it.
MAX_MEMBER_BYTES = 512 * 2**20


@lru_cache(maxsize=2)
def _row_group(path: str, index: int):
    """One parquet row group's image column; cached per worker so neighbouring rows share one read."""
    return pq.ParquetFile(path).read_row_group(index, columns=["image"]).column("image")


@lru_cache(maxsize=64)
def _row_group_starts(path: str) -> tuple[int, ...]:
    meta = pq.ParquetFile(path).metadata
    starts, total = [], 0
    for i in range(meta.num_row_groups):
        starts.append(total)
        total += meta.row_group(i).num_rows
    return tuple(starts + [total])


def parquet_image_bytes(path: str, row: int) -> bytes:
    starts = _row_group_starts(path)
    if not 0 <= row < starts[-1]:
        raise DataError(f"{path}: row {row} does not exist ({starts[-1]} rows)")
    group = max(i for i, s in enumerate(starts[:-1]) if s <= row)
    cell = _row_group(path, group)[row - starts[group]].as_py()
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not data:
        raise DataError(f"{path}: row {row} has no image bytes")
    return data


@lru_cache(maxsize=8)
def _zip(path: str, pid: int) -> zipfile.ZipFile:
    """One open archive per process: a ZipFile handle shared across a fork would share its file offset."""
    return zipfile.ZipFile(path)


def zip_member_bytes(path: str, member: str) -> bytes:
    archive = _zip(path, os.getpid())
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise DataError(f"{path}: no member {member!r} in the archive") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise DataError(f"{path}: member {member!r} inflates to {info.file_size} bytes, over the limit")
    return archive.read(info)


def _open(sample: VQASample, window: Window) -> Image.Image:
    """The image as PIL opened it (lazy: header only) or, for DICOM, already windowed to RGB."""
    if sample.image_row is not None:
        return Image.open(io.BytesIO(parquet_image_bytes(sample.image, sample.image_row)))
    if sample.image_member:
        data = zip_member_bytes(sample.image, sample.image_member)
        if sample.image_member.lower().endswith(".dcm"):
            return read_dicom(
                io.BytesIO(data), f"{sample.image} member {sample.image_member}", window, MAX_IMAGE_PIXELS
            )
        return Image.open(io.BytesIO(data))
    if sample.image.lower().endswith(".dcm"):
        return read_dicom(Path(sample.image), sample.image, window, MAX_IMAGE_PIXELS)
    return Image.open(Path(sample.image))


def open_image(sample: VQASample, max_side: int = 1024, window: Window = None) -> Image.Image:
    """Decode one sample's image as RGB, shrunk so its longer side is at most `max_side`. DICOM and
    16-bit/float images are windowed to 8 bits (`window` = (center, width), else stored, else min..max).

    Raises DataError naming the file (and row) for missing, corrupt or oversized images.
    """
    where = f"{sample.image}" + (f" row {sample.image_row}" if sample.image_row is not None else "")
    where += f" member {sample.image_member}" if sample.image_member else ""
    return _decoded(lambda: _open(sample, window), where, sample.id, max_side, window)


def load_image(source, max_side: int = 1024, window: Window = None, where: str = "image") -> Image.Image:
    """`open_image` for an image given in memory or by path: a PIL image (not modified), encoded bytes
    (PNG, JPEG, ..., or DICOM: the 'DICM' marker at byte 128), or a file path. The pixels come out exactly
    as evaluation decodes a file of the same content. Raises DataError naming `where`."""
    if isinstance(source, (str, Path)):
        return open_image(
            VQASample(id=str(source), image=str(source), question="", answer=""), max_side, window
        )
    if isinstance(source, Image.Image):
        # a copy, so that draft/thumbnail below never touch the caller's image
        return _decoded(source.copy, where, None, max_side, window)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data[128:132] == b"DICM":
            dicom = lambda: read_dicom(io.BytesIO(data), where, window, MAX_IMAGE_PIXELS)  # noqa: E731
            return _decoded(dicom, where, None, max_side, window)
        return _decoded(lambda: Image.open(io.BytesIO(data)), where, None, max_side, window)
    raise TypeError(f"an image is a PIL.Image, bytes or a path, not {type(source).__name__}")


def _decoded(opener, where: str, sample_id: str | None, max_side: int, window: Window) -> Image.Image:
    """The image `opener()` returns (lazily opened), checked against MAX_IMAGE_PIXELS, windowed to 8 bits
    when high-bit, decoded as RGB and shrunk to `max_side`; every failure a DataError naming `where`."""
    try:
        img = opener()
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise DataError(f"{where}: {img.width}x{img.height} pixels is over the {MAX_IMAGE_PIXELS} limit")
        if img.mode in HIGH_BIT_MODES:
            img = high_bit_to_rgb(img, window)
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale when much larger
        img = img.convert("RGB")
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{where}: image file not found (sample {sample_id})") from e
    except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, Image.DecompressionBombError) as e:
        for_sample = f" for sample {sample_id}" if sample_id is not None else ""
        raise DataError(f"{where}: cannot decode image{for_sample}: {e}") from e
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img
