"""Opening one image on demand: from a file, or from one row of a parquet file (bytes decoded lazily)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from medvqa.data.errors import DataError
from medvqa.data.sample import VQASample

# Refuse decompression bombs: PIL raises DecompressionBombError above 2x this, we refuse above 1x.
MAX_IMAGE_PIXELS = 8192 * 8192
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


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


def open_image(sample: VQASample, max_side: int = 1024) -> Image.Image:
    """Decode one sample's image as RGB, shrunk so its longer side is at most `max_side`.

    Raises DataError naming the file (and row) for missing, corrupt or oversized images.
    """
    where = f"{sample.image}" + (f" row {sample.image_row}" if sample.image_row is not None else "")
    try:
        if sample.image_row is not None:
            img = Image.open(io.BytesIO(parquet_image_bytes(sample.image, sample.image_row)))
        else:
            img = Image.open(Path(sample.image))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise DataError(f"{where}: {img.width}x{img.height} pixels is over the {MAX_IMAGE_PIXELS} limit")
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale when much larger
        img = img.convert("RGB")
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{where}: image file not found (sample {sample.id})") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: cannot decode image for sample {sample.id}: {e}") from e
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img
