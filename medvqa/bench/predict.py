"""`python -m medvqa.bench predict run=<run> out=<folder>`: does `python -m medvqa.predict` answer a run's
test questions exactly as the run's evaluation did, and is its confidence higher on right answers?

Writes the run's test questions (predictions.jsonl: id, image, image_row, image_member, question) as a
questions file, runs the predict command on it in a subprocess (the command a user runs), and compares
its answers with the run's `prediction` per id. Confidence sanity: mean confidence of the closed answers
the run scored right (closed_exact) vs wrong, and mean_logprob of right vs wrong open answers (exact_match).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[2]


def questions_file(run: Path, out: Path) -> tuple[Path, str, list[dict]]:
    """The run's test questions as a predict inputs file; its image root; the run's rows."""
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]
    keep = ("id", "image", "image_row", "image_member", "question")
    path = out / "questions.jsonl"
    path.write_text("".join(json.dumps({k: r[k] for k in keep if k in r}) + "\n" for r in rows))
    return path, os.path.commonpath([os.path.dirname(r["image"]) for r in rows]), rows


def _means(values: list[float | None]) -> dict[str, float | int | None]:
    """n and mean of the values given; `none`: how many were null (a closed answer naming no option)."""
    given = [v for v in values if v is not None]
    return {
        "n": len(given),
        "mean": round(mean(given), 4) if given else None,
        "none": len(values) - len(given),
    }


def run(run: str, out: str, batch_size: str | None = None, device: str = "cpu") -> dict:
    run_dir, out_dir = Path(run), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, root, truth = questions_file(run_dir, out_dir)
    command = [sys.executable, "-m", "medvqa.predict", f"run={run_dir}", f"inputs={path}", f"inputs_root={root}",
               f"device={device}", "progress=false", f"hydra.run.dir={out_dir / 'predict'}"]  # fmt: skip
    command += [f"batch_size={batch_size}"] if batch_size else []
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"predict failed: {done.stderr[-2000:]}")
    got = {}
    for line in (out_dir / "predict" / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        got[row["id"]] = row
    different = [r["id"] for r in truth if got.get(r["id"], {}).get("answer") != r["prediction"]]
    closed = [
        (got[r["id"]], r) for r in truth if r["answer_type"] == "closed" and got[r["id"]]["kind"] == "closed"
    ]
    opened = [(got[r["id"]], r) for r in truth if r["answer_type"] == "open"]
    return {
        "equal": len(truth) - len(different),
        "total": len(truth),
        "first_different": different[:5],
        "closed_confidence_right": _means([g["confidence"] for g, r in closed if r["scores"]["closed_exact"] == 1]),
        "closed_confidence_wrong": _means([g["confidence"] for g, r in closed if r["scores"]["closed_exact"] != 1]),
        "closed_kind_agreement": f"{len(closed)} of {sum(r['answer_type'] == 'closed' for r in truth)}",
        "open_mean_logprob_right": _means([g["mean_logprob"] for g, r in opened if r["scores"]["exact_match"] == 1]),
        "open_mean_logprob_wrong": _means([g["mean_logprob"] for g, r in opened if r["scores"]["exact_match"] != 1]),
    }  # fmt: skip
