"""`python -m medvqa.export run=outputs/<run> out=exported/ [check_items=64] [force=false] [quantize=int8|int4]`

Merge the run's adapter, check the merged answers, write a standalone transformers checkpoint with its model
card (medvqa/inference/export.py, conf/export.yaml, docs/export.md). The checked items' answers go to this
command's own folder (hydra.run.dir, export_check.jsonl), never into the export: they quote held-out data.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from medvqa.cli import user_errors
from medvqa.io import atomic_write_jsonl

log = logging.getLogger("medvqa")


def check_rows(answers: dict[str, list]) -> list[dict]:
    """One row per checked item: id, question, image, the adapter's and the merged model's answer."""
    return [
        {
            "id": a.id,
            "question": a.question,
            "image": a.image,
            "adapter_answer": a.answer,
            "merged_answer": m.answer,
        }
        for a, m in zip(answers["adapter"], answers["merged"], strict=True)
    ]


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hydra.core.hydra_config import HydraConfig

    with user_errors():
        from medvqa.inference.export import export_run

        record = export_run(cfg.run, cfg.out, cfg.check_items, cfg.force, cfg.quantize, cfg.device)
        rows = check_rows(record["answers"])
        atomic_write_jsonl(Path(HydraConfig.get().runtime.output_dir) / "export_check.jsonl", rows)
        check = record["check"]
        verdict = (
            "not checked"
            if not check["items"]
            else (
                f"{check['items']} checked answers identical"
                if check["identical"]
                else "FORCED: " + check["difference"]
            )
        )
        print(f"exported {cfg.run} -> {cfg.out} ({verdict})")


if __name__ == "__main__":
    main()
