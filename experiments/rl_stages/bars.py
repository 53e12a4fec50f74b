"""Mean of a logged training metric over the first and last 10 % of a run's steps.

python experiments/rl_stages/bars.py <run dir> train/reward [train/reward_answer_match ...]
Reads <run dir>/csv/metrics.csv (the CSV logger's file) and prints one JSON object per metric.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def first_last(run_dir: str, metric: str, share: float = 0.1) -> dict:
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="") as f:
        rows = [(int(r["step"]), float(r[metric])) for r in csv.DictReader(f) if r.get(metric)]
    if not rows:
        raise SystemExit(f"{metric} is not in {run_dir}/csv/metrics.csv")
    last_step = max(s for s, _ in rows)
    cut = max(1, round((last_step + 1) * share))
    first = [v for s, v in rows if s < cut]
    last = [v for s, v in rows if s > last_step - cut]
    return {
        "metric": metric,
        "steps": last_step + 1,
        "window_steps": cut,
        "first": round(sum(first) / len(first), 4),
        "last": round(sum(last) / len(last), 4),
    }


if __name__ == "__main__":
    for name in sys.argv[2:]:
        print(json.dumps(first_last(sys.argv[1], name)))
