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


def verdict(record: dict) -> str:
    """What out/medvqa_export.json records, in words: the merge check, and for a quantized export how many
    checked answers the quantized model kept ("63 of 64 checked items"), never a summary of either."""
    check, quantized = record["check"], record.get("quantize")
    if not check["items"]:
        said = "not checked"
    elif check["identical"]:
        said = f"{check['items']} checked answers identical" + (" after the merge" if quantized else "")
    else:
        said = "FORCED: " + check["difference"]
    if quantized and quantized["items"]:
        said += f"; {quantized['form']}: {quantized['agreement']} agree with full precision"
    elif quantized:
        said += f"; {quantized['form']}: its answers not compared (check_items=0)"
    return said


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hydra.core.hydra_config import HydraConfig

    with user_errors():
        from medvqa.inference.export import export_run

        record = export_run(cfg.run, cfg.out, cfg.check_items, cfg.force, cfg.quantize, cfg.device)
        rows = check_rows(record["answers"])
        atomic_write_jsonl(Path(HydraConfig.get().runtime.output_dir) / "export_check.jsonl", rows)
        print(f"exported {cfg.run} -> {cfg.out} ({verdict(record)})")


if __name__ == "__main__":
    main()
