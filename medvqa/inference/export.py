"""A run's model as a standalone transformers checkpoint: merge the adapter, verify, (quantize), write.

    from medvqa.inference.export import export_run

    record = export_run("outputs/<run>", "exported/", check_items=64)

The folder holds config.json + model.safetensors + generation_config.json (the run's greedy evaluation
decoding) + the processor / tokenizer / chat template files, README.md (model card), medvqa_config.yaml
(the run's config) and medvqa_export.json (what was checked). `AutoModelForImageTextToText.from_pretrained`
and `AutoProcessor.from_pretrained` load it without medvqa.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from medvqa.inference import merge
from medvqa.inference.model_card import model_card
from medvqa.inference.run_data import run_datamodule
from medvqa.io import atomic_write_json
from medvqa.models.quantize import check_form, load_quantized
from medvqa.models.runs import load_run, run_config
from medvqa.stages.base import VLMStage

log = logging.getLogger(__name__)
RECORD = "medvqa_export.json"  # marks a folder as an export, which a new export may replace
VLLM_WARNING = ("the adapter also changed {n} modules of the vision tower / projector (e.g. {first}). This "
                "merged export carries them, but a server that applies the run's adapter/ itself would not "
                "(vLLM serves LoRA on the language model only): serve this merged model, not adapter/")  # fmt: skip


class ExportRefused(ValueError):
    """The merge changed the model's answers; the message names the first changed item and `force=true`."""


def eval_stage(cfg: DictConfig, model, processor) -> VLMStage:
    """A stage holding `model` that generates exactly as the run's evaluation did (stage.max_new_tokens,
    stage.eval_generation over the explicit greedy EVAL_GENERATION)."""
    stage = cfg.stage
    return VLMStage(model, processor, optimizer=None, max_new_tokens=int(stage.get("max_new_tokens", 16)),
                    eval_generation=dict(stage.get("eval_generation") or {}))  # fmt: skip


def check_batches(
    cfg: DictConfig, processor, n: int | None, device: torch.device, batch_size: int | None = None
) -> list[dict[str, Any]]:
    """The first `n` (None: all) items of the run's test split (its data config, split and seed), collated
    as the run's evaluation collated them (data.eval_batch_size, unless `batch_size`), on `device`."""
    if n is not None and n <= 0:
        return []
    datamodule = run_datamodule(cfg, **({"eval_batch_size": batch_size} if batch_size else {}))
    datamodule.processor = processor
    datamodule.splits["test"] = datamodule.splits["test"][:n]
    if not datamodule.splits["test"]:
        raise ValueError(
            f"check_items={n}: the run's test split is empty; set check_items=0 to skip the check"
        )
    return [_to(b, device) for b in datamodule.test_dataloader()]


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def prepare_out(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier export (it may hold anything)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RECORD).is_file())):
        raise ValueError(f"out={out} exists and is not a medvqa export; choose another out= or remove it")


def export_run(
    run_dir: str | Path,
    out: str | Path,
    check_items: int = 64,
    force: bool = False,
    quantize: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Merge, check, (quantize) and write the run in `run_dir` to `out` (atomically: a temporary sibling
    folder renamed into place). Returns the record written to out/medvqa_export.json, plus the checked
    answers under "answers" (not written into the export: they quote held-out data)."""
    run_dir, out, device = Path(run_dir), Path(out), torch.device(device)
    if quantize:
        check_form(quantize)
    prepare_out(out)
    cfg = run_config(run_dir, adapter=True)
    vlm = load_run(run_dir)
    model = vlm.model.to(device)
    batches = check_batches(cfg, vlm.processor, check_items, device)
    stage = eval_stage(cfg, model, vlm.processor)
    before, before_lp = merge.answer_items(stage, batches), merge.first_token_logprobs(model, batches)
    vision = merge.vision_adapter_modules(model)
    merged = merge.merge_adapter(model)
    after = merge.answer_items(eval_stage(cfg, merged, vlm.processor), batches)
    logprob_change = merge.largest_change(before_lp, merge.first_token_logprobs(merged, batches))
    difference = merge.check_merge(before, after) if batches else None
    check, warnings = _verdict(out, before, difference, logprob_change, force, vision)
    merged.generation_config = stage.eval_generation_config()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    vlm.processor.save_pretrained(tmp)
    quantized = _quantize(tmp, quantize, device, cfg, vlm.processor, batches, after) if quantize else None
    record = {"run": str(run_dir), "check": check, "quantize": quantized, "warnings": warnings,
              "vision_adapter_modules": len(vision)}  # fmt: skip
    _write_card(tmp, cfg, run_dir, record)
    _shareable(tmp)
    _swap(tmp, out)
    return record | {"answers": {"adapter": before, "merged": after}}


def _verdict(out: Path, before, difference, change: float, force: bool, vision: list[str]):
    """The check's record and the card's warnings; an ExportRefused when an answer changed without force."""
    if difference and not force:
        raise ExportRefused(f"out={out} not written: the merge changed the model's greedy answers ({difference}). "
                            "Check the adapter and peft versions; force=true exports anyway, with a warning "
                            "in the model card")  # fmt: skip
    warnings = [VLLM_WARNING.format(n=len(vision), first=vision[0])] if vision else []
    if difference:
        warnings.insert(0, f"exported with force=true although the merge changed answers: {difference}")
    for w in warnings:
        log.warning(w)
    check = {"items": len(before), "identical": difference is None, "forced": bool(difference),
             "difference": str(difference) if difference else None, "max_first_token_logprob_change": change}  # fmt: skip
    return check, warnings


def _quantize(tmp: Path, form: str, device, cfg, processor, batches, full) -> dict[str, Any]:
    """Replace the full-precision weights in `tmp` by their `form` quantization; how many checked answers
    it keeps (quantization changes some: reported, not refused)."""
    model = load_quantized(str(tmp), form, device)
    answers = merge.answer_items(eval_stage(cfg, model, processor), batches)
    same = sum(a.answer == b.answer for a, b in zip(full, answers, strict=True))
    model.generation_config = eval_stage(cfg, model, processor).eval_generation_config()
    for f in tmp.glob("model*.safetensors*"):
        f.unlink()
    model.save_pretrained(tmp)
    library = "bitsandbytes" if device.type == "cuda" else "torchao"
    agreement = f"{same} of {len(answers)} checked items" if answers else "no checked items (check_items=0)"
    return {"form": form, "library": library, "agreement": agreement, "same": same, "items": len(answers)}


def _write_card(folder: Path, cfg: DictConfig, run_dir: Path, record: dict[str, Any]) -> None:
    metrics_path, info_path = run_dir / "metrics.json", run_dir / "run_info.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    samples = json.loads(info_path.read_text()).get("samples") if info_path.is_file() else None
    card = model_card(cfg, metrics, record["check"], samples, record["quantize"], record["warnings"])
    (folder / "README.md").write_text(card, encoding="utf-8")
    shutil.copyfile(run_dir / "config.yaml", folder / "medvqa_config.yaml")
    atomic_write_json(folder / RECORD, record)


def _shareable(folder: Path) -> None:
    """Files 0644, the folder 0755: an export is made to be shared, but transformers writes the weights
    through a private temporary file (0600), which other users of the machine then cannot read."""
    folder.chmod(0o755)
    for f in folder.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)


def _swap(tmp: Path, out: Path) -> None:
    """Put the finished `tmp` folder at `out`; an earlier export there is removed only after."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
