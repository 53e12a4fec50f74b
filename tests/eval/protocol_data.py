"""Test data for the protocol and answer-file tests: a jsonl dataset holding given (question, truth, type)
rows as its test split, and the fixtures of hand-made and reference-scored pairs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
QUICK = ["eval.text_metrics=[]", "callbacks.progress_bar=null"]


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def jsonl_dataset(root: Path, pairs: Sequence[dict]) -> Path:
    """data=jsonl data.root=<root>: `pairs` ({question, answer, answer_type}) as the test split, ids q0, q1,
    ..., four questions per patient, plus four training questions (a split needs a training part)."""
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (128, 128, 128)).save(root / "scan.png")
    lines = [{"id": f"q{i}", "image": "scan.png", "question": p["question"], "answer": p["answer"],
              "answer_type": p["answer_type"], "patient_id": f"p{i // 4}", "split": "test"}
             for i, p in enumerate(pairs)]  # fmt: skip
    lines += [{"image": "scan.png", "question": "Is it?", "answer": "yes", "patient_id": f"t{i}", "split": "train"}
              for i in range(4)]  # fmt: skip
    (root / "all.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
