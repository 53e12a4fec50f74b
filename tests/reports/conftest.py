"""Hand-built run folders as `python -m medvqa.run` writes them: metrics.json, predictions.jsonl (rows with
image paths, parquet rows, zip members and a DICOM), config.yaml, csv/metrics.csv."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medvqa.data.fixtures.pictures import write_dicom

sys.path.insert(0, str(Path(__file__).parent))  # browser.py next to this file

CATEGORIES = {"question_type": ("PRES", "POS", "SIZE"), "organ": ("CHEST", "ABD"), "modality": ("CT", "MRI")}
OPEN = [("lower lobe", {1.0: "lower lobe", 0.5: "lower", 0.0: "liver"})]  # (truth, {open_recall: prediction})


def _png(path: Path, seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size), np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 120 + seed % 100  # a bright organ
    pixels = np.clip(pixels + rng.integers(0, 40, (size, size)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_fields(tmp_path_factory):
    """image_fields(n) -> n prediction-row image fields, PNG files except rows 7, 8, 9 (the first the
    gallery shows in the tests): a parquet row, a zip member and a DICOM file (each kind open_image reads)."""
    root = tmp_path_factory.mktemp("pictures")
    fields = [{"image": str(root / f"img{i}.png")} for i in range(40)]
    for i, f in enumerate(fields):
        _png(Path(f["image"]), i)
    table = pa.table({"image": [{"bytes": _png(root / "p.png", 77 + k), "path": None} for k in range(2)]})
    pq.write_table(table, root / "rows.parquet")
    with zipfile.ZipFile(root / "images.zip", "w") as archive:
        archive.writestr("scans/a.png", _png(root / "z.png", 91))
    write_dicom(root / "ct.dcm", seed=3, size=64)
    special = [{"image": str(root / "rows.parquet"), "image_row": 1},
               {"image": str(root / "images.zip"), "image_member": "scans/a.png"},
               {"image": str(root / "ct.dcm")}]  # fmt: skip
    return lambda n: (fields[:7] + special + fields[7:])[:n]


def closed_row(i: int, right: bool, extra: dict) -> dict:
    truth = "yes" if i % 2 else "no"
    pred = truth if right else ("no" if truth == "yes" else "yes")
    score = float(right)
    return {"id": f"c{i}", "question": f"Is there a lesion in region {i}?", "answer": truth, "answer_type": "closed",
            "prediction": pred, "scores": {"closed_acc": score, "closed_exact": score, "exact_match": score,
            "hedged": 0.0}, "source": "synthetic"} | _categories(i) | extra  # fmt: skip


def open_row(i: int, recall: float, extra: dict) -> dict:
    truth, preds = OPEN[0]
    f1 = {1.0: 1.0, 0.5: 2 / 3, 0.0: 0.0}[recall]
    return {"id": f"o{i}", "question": f"Where is finding {i}?", "answer": truth, "answer_type": "open",
            "prediction": preds[recall], "scores": {"open_recall": recall, "token_f1": f1,
            "exact_match": float(recall == 1.0)}, "source": "synthetic"} | _categories(i + 1) | extra  # fmt: skip


def _categories(i: int) -> dict:
    return {key: values[i % len(values)] for key, values in CATEGORIES.items()}


def make_run(path: Path, closed: list[int], opens: list[float] = (), precision: str = "32-true",
             images: list[dict] | None = None, order: list[int] | None = None, extra_ids: int = 0,
             model: str = "tiny_qwen2_vl", curves: bool = True) -> Path:  # fmt: skip
    """A finished run folder: closed question i right when closed[i], open question j with open_recall
    opens[j]; `images` gives rows their image fields; `order` permutes the rows; `extra_ids` adds questions
    only this run has."""
    path.mkdir(parents=True, exist_ok=True)
    images = images or []
    rows = [closed_row(i, bool(r), images[i] if i < len(images) else {}) for i, r in enumerate(closed)]
    rows += [
        open_row(j, r, images[len(closed) + j] if len(closed) + j < len(images) else {})
        for j, r in enumerate(opens)
    ]
    rows += [closed_row(1000 + k, True, {}) for k in range(extra_ids)]
    if order is not None:
        rows = [rows[k] for k in order] + rows[len(order) :]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    closed_acc = sum(closed) / max(1, len(closed))
    metrics = {
        "test": {"test/closed_acc": closed_acc},
        "val": {},
        "weights": "best",
        "checkpoint": "step000010.ckpt",
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "config.yaml").write_text(
        f"paths:\n  output_dir: {path}\nmodel:\n  name: {model}\n  hidden_size: 32\n"
        f"trainer:\n  precision: {precision}\n  default_root_dir: {path}\n  max_steps: 40\nseed: 42\n"
    )
    if curves:
        (path / "csv").mkdir(exist_ok=True)
        lines = ["step,train/loss,val/loss,val/closed_acc"]
        for step in range(0, 41, 4):
            lines.append(f"{step},{3.0 / (1 + step / 8):.4f},,")
            if step % 20 == 0 and step:
                lines.append(f"{step},,{2.0 / (1 + step / 10):.4f},{closed_acc * step / 40:.4f}")
        (path / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path
