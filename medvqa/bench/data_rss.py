"""Memory of a loaded dataset: records only, never the pixels.

    python -m medvqa.bench data_rss [rows=50000] [small=5000] [image_size=224] [items=500] [root=DIR]

Writes Kvasir-VQA-shaped parquet releases of `small` and `rows` rows (about 9 questions per picture, each
row carrying its picture's JPEG bytes, as the release does), then, in a fresh process per size, measures
the resident set size (RSS) after imports, after `MedVQADataModule.setup()` (read + check + split) and
after decoding `items` random training items. Two readers read the same files: `kvasir_vqa` (reads no
image bytes while indexing) and the VQA-RAD/PathVQA-style parquet path (hashes every image's bytes,
batch by batch, to group repeated pictures).

Lazy means: the memory setup adds grows with the rows at a record's size (a few hundred bytes), not with
the image bytes in the files, and decoding items adds a bounded amount however large the dataset.
"""

from __future__ import annotations

import multiprocessing
import random
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from medvqa.data import fixtures

QUESTIONS_PER_IMAGE = 9  # Kvasir-VQA: 58.8k rows over 6.5k pictures


def _measure(root: str, reader_name: str, items: int) -> dict:
    """Runs in a fresh (spawned) process: RSS at each stage of loading, in MB."""
    import psutil

    from medvqa.data.datamodule import MedVQADataModule
    from medvqa.data.formats import kvasir_vqa, vqa_rad

    rss = lambda: psutil.Process().memory_info().rss / 2**20  # noqa: E731
    reader = {"kvasir_vqa": kvasir_vqa.read, "parquet_hashing": vqa_rad.read}[reader_name]
    baseline = rss()
    started = time.perf_counter()
    dm = MedVQADataModule(reader, root, split_by="group")
    dm.setup()
    setup_s = time.perf_counter() - started
    after_setup = rss()
    dataset = dm.dataset("train")
    for i in random.Random(0).sample(range(len(dataset)), min(items, len(dataset))):
        dataset[i]
    return {
        "records": sum(len(v) for v in dm.splits.values()),
        "setup_seconds": round(setup_s, 2),
        "rss_mb": {
            "after_imports": round(baseline, 1),
            "after_setup": round(after_setup, 1),
            f"after_{items}_items": round(rss(), 1),
        },  # fmt: skip
        "setup_added_mb": round(after_setup - baseline, 1),
        "items_added_mb": round(rss() - after_setup, 1),
    }


def _release(folder: Path, rows: int, image_size: int) -> dict:
    if not (folder / "data").is_dir():
        fixtures.write("kvasir_vqa", folder, n_images=-(-rows // QUESTIONS_PER_IMAGE), size=image_size,
                       questions_per_image=QUESTIONS_PER_IMAGE, n_shards=4, row_group_size=100)  # fmt: skip
    shards = sorted((folder / "data").glob("*.parquet"))
    image_bytes = 0
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(columns=["image"]):
            image_bytes += sum(len(cell["bytes"]) for cell in batch.column("image").to_pylist())
    return {
        "rows": sum(pq.ParquetFile(s).metadata.num_rows for s in shards),
        "parquet_mb": round(sum(s.stat().st_size for s in shards) / 2**20, 1),
        "image_bytes_in_rows_mb": round(image_bytes / 2**20, 1),
    }


def run(
    rows: int = 50000, small: int = 5000, image_size: int = 224, items: int = 500, root: str | None = None
):
    rows, small, image_size, items = int(rows), int(small), int(image_size), int(items)
    base = Path(root) if root else Path(tempfile.mkdtemp(prefix="medvqa-rss-"))
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter per measurement
    result: dict = {"image_size": image_size}
    for label, n in (("small", small), ("large", rows)):
        folder = base / f"kvasir-{n}-{image_size}px"
        entry = _release(folder, n, image_size)
        for reader in ("kvasir_vqa", "parquet_hashing"):
            with spawn.Pool(1) as pool:
                entry[reader] = pool.apply(_measure, (str(folder), reader, items))
        result[label] = entry
    for reader in ("kvasir_vqa", "parquet_hashing"):
        grew = result["large"][reader]["setup_added_mb"] - result["small"][reader]["setup_added_mb"]
        more_rows = result["large"]["rows"] - result["small"]["rows"]
        result[f"{reader}_bytes_per_extra_row"] = round(grew * 2**20 / more_rows)
    image_per_row = result["large"]["image_bytes_in_rows_mb"] * 2**20 / result["large"]["rows"]
    result["image_bytes_per_row"] = round(image_per_row)
    return result
