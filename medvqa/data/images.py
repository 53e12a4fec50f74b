"""Opening one image on demand: from a file, one row of a parquet file or one member of a zip archive
(bytes read and decoded lazily); DICOM and 16-bit images are windowed to 8 bits (see pixels.py)."""

from __future__ import annotations

import io
import os
import re
import zipfile
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from medvqa.data.errors import DataError
from medvqa.data.pixels import (
    HIGH_BIT_MODES,
    DicomFrame,
    Window,
    high_bit_to_rgb,
    is_dicom_bytes,
    is_dicom_file,
    one_line,
    read_dicom,
)
from medvqa.data.sample import VQASample

# Refuse decompression bombs: PIL raises DecompressionBombError above 2x this, we refuse above 1x, both
# with the one message "WxH pixels is over the N limit" (the app's "too large to open safely").
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


DICOM_SUFFIXES = (".dcm", ".dicom")


def _open(sample: VQASample, window: Window, frame: DicomFrame = "middle") -> Image.Image:
    """The image as PIL opened it (lazy: header only) or, for DICOM, already windowed to RGB. DICOM is
    known by its name or by its content (the 'DICM' marker: a CD / PACS export names files `2062`)."""
    if sample.image_row is not None:
        data = parquet_image_bytes(sample.image, sample.image_row)
        where = f"{sample.image} row {sample.image_row}"
        return _open_bytes(data, where, window, frame)
    if sample.image_member:
        data = zip_member_bytes(sample.image, sample.image_member)
        where = f"{sample.image} member {sample.image_member}"
        return _open_bytes(data, where, window, frame, sample.image_member.lower().endswith(DICOM_SUFFIXES))
    path = Path(sample.image)
    if sample.image.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(path):
        return read_dicom(path, sample.image, window, MAX_IMAGE_PIXELS, frame)
    return _pil_open(path, sample.image)


def _open_bytes(data: bytes, where: str, window: Window, frame: DicomFrame, dicom: bool = False):
    if dicom or is_dicom_bytes(data[:132]):
        return read_dicom(io.BytesIO(data), where, window, MAX_IMAGE_PIXELS, frame)
    return _pil_open(io.BytesIO(data), where)


def _pil_open(source, where: str) -> Image.Image:
    """PIL's lazy open; past twice MAX_IMAGE_PIXELS PIL itself refuses, and that is said as ours is."""
    try:
        return Image.open(source)
    except Image.DecompressionBombError as e:
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{declared.group(1)} pixels" if declared else "the image"
        raise DataError(f"{where}: {size} is over the {MAX_IMAGE_PIXELS} limit") from e


def open_image(sample: VQASample, max_side: int = 1024, window: Window = None,
               frame: DicomFrame = "middle") -> Image.Image:  # fmt: skip
    """Decode one sample's image as RGB, shrunk so its longer side is at most `max_side`. DICOM and
    16-bit/float images are windowed to 8 bits (`window` = (center, width), else stored, else min..max);
    of a multi-frame DICOM only the frame `frame` names is decoded (data.dicom_frame).

    Raises DataError naming the file (and row) with a one-line reason for whatever goes wrong: a missing,
    corrupt, oversized or undecodable image is that image's problem, never the run's.
    """
    where = f"{sample.image}" + (f" row {sample.image_row}" if sample.image_row is not None else "")
    where += f" member {sample.image_member}" if sample.image_member else ""
    return _decoded(lambda: _open(sample, window, frame), where, sample.id, max_side, window)


def load_image(source, max_side: int = 1024, window: Window = None, where: str = "image",
               frame: DicomFrame = "middle") -> Image.Image:  # fmt: skip
    """`open_image` for an image given in memory or by path: a PIL image (not modified), encoded bytes
    (PNG, JPEG, ..., or DICOM: the 'DICM' marker at byte 128), or a file path. The pixels come out exactly
    as evaluation decodes a file of the same content. Raises DataError naming `where`."""
    if isinstance(source, (str, Path)):
        return open_image(
            VQASample(id=str(source), image=str(source), question="", answer=""), max_side, window, frame
        )
    if isinstance(source, Image.Image):
        # a copy, so that draft/thumbnail below never touch the caller's image
        return _decoded(source.copy, where, None, max_side, window)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _decoded(lambda: _open_bytes(data, where, window, frame), where, None, max_side, window)
    raise TypeError(f"an image is a PIL.Image, bytes or a path, not {type(source).__name__}")


def _decoded(opener, where: str, sample_id: str | None, max_side: int, window: Window) -> Image.Image:
    """The image `opener()` returns (lazily opened), checked against MAX_IMAGE_PIXELS, windowed to 8 bits
    when high-bit, decoded as RGB and shrunk to `max_side`; every failure a DataError naming `where`, with
    a one-line reason (any exception: an image a decoder chokes on is that image's problem)."""
    try:
        img = opener()
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise DataError(f"{where}: {img.width}x{img.height} pixels is over the {MAX_IMAGE_PIXELS} limit")
        if img.mode in HIGH_BIT_MODES:
            img = high_bit_to_rgb(img, window)
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale when much larger
        img = img.convert("RGB")
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{where}: image file not found (sample {sample_id})") from e
    except Exception as e:  # PIL and its plugins raise many types (OSError, SyntaxError, struct.error ...)
        for_sample = f" for sample {sample_id}" if sample_id is not None else ""
        raise DataError(f"{where}: cannot decode image{for_sample}: {one_line(e)}") from e
    return img
