"""The README.md (model card) an export carries: what the model is, what it was trained and scored on, how
it was checked, how to load it, and what it must not be used for. The card is made to be shared, so it
names no local path (the run's folder, data.root): the dataset by its reader and folder name only."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from omegaconf import DictConfig, OmegaConf

LIMITS = """\
- **Research use only. Not a medical device**: it is not cleared or approved for diagnosis, treatment or
  any clinical decision, and its answers must not reach a patient or a clinician's decision unreviewed.
- It answers short visual questions about one image; it does not see the patient's history, other
  images or prior studies, and it can be confidently wrong.
- Its scores hold for the data above (its test split). On other scanners, sites, populations or
  question styles accuracy can be much lower; measure it on your own held-out data first.
- Greedy decoding as below reproduces the evaluated answers; other decoding settings change them."""


def base_model(cfg: DictConfig) -> str:
    """The base checkpoint as a user would name it: the hub id / folder, or the offline tiny build."""
    model = cfg.model
    if model.get("name_or_path"):
        return _no_path(str(model.name_or_path))
    args = {k: v for k, v in OmegaConf.to_container(model).items() if not k.startswith("_")}
    return f"{model._target_}({', '.join(f'{k}={v}' for k, v in args.items())}) (random weights, seeded)"


def _no_path(name: str) -> str:
    """A hub id as given ("Qwen/Qwen2-VL-2B-Instruct"); a local folder ("/models/qwen2-vl-7b") by its name."""
    local = name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
    return f"a local copy named `{PurePath(name).name}`" if local else name


def data_line(cfg: DictConfig, samples: dict[str, int] | None) -> str:
    data = cfg.data
    reader = str(data.reader.get("_target_", "?")).removeprefix("medvqa.data.formats.").removesuffix(".read")
    counts = f"; samples {json.dumps(samples, sort_keys=True)}" if samples else ""
    folder = PurePath(str(data.root)).name  # the dataset's folder name, never the machine's path to it
    return (f"`{reader}` from a folder named `{folder}`, split_by={data.split_by}, seed={data.seed}, "
            f"val/test fractions {data.val_fraction}/{data.test_fraction}{counts}")  # fmt: skip


def metrics_table(metrics: dict[str, Any]) -> str:
    test = metrics.get("test") or {}
    if not test:
        return "No test metrics were recorded for this run (metrics.json has no `test`)."
    counts = ("test/scored", "test/skipped")  # question counts, not fractions
    rows = "\n".join(f"| `{k}` | {int(v) if k in counts else f'{v:.4f}'} |" for k, v in sorted(test.items())
                     if isinstance(v, (int, float)))  # fmt: skip
    weights = metrics.get("weights", "last")
    checkpoint = PurePath(metrics["checkpoint"]).name if metrics.get("checkpoint") else "end of training"
    return f"Weights: the run's `{weights}` weights ({checkpoint}).\n\n" \
           f"| metric | value |\n|---|---|\n{rows}"  # fmt: skip


def model_card(
    cfg: DictConfig,
    metrics: dict[str, Any],
    check: dict[str, Any],
    samples: dict[str, int] | None = None,
    quantize: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> str:
    """The card's markdown. `check`: the merge check's record ({"items", "identical", "difference", "forced"});
    `quantize`: {"form", "library", "agreement"} for a quantized export; `warnings`: lines for the top."""
    peft = cfg.get("peft") or {}
    adapter = "DoRA" if peft.get("use_dora") else "LoRA"
    stage = str(cfg.stage._target_).rsplit(".", 1)[-1]
    notes = "".join(f"> **Warning:** {w}\n\n" for w in warnings or [])
    return f"""# Medical VQA model exported from a medvqa run

{notes}A vision-language model fine-tuned for visual question answering on medical images, with its
{adapter} adapter merged into the base weights (peft `merge_and_unload`).

## Model
- Base model: {base_model(cfg)}
- Adapter: {adapter}, r={peft.get("r")}, alpha={peft.get("lora_alpha")}, target_modules={peft.get("target_modules")}
- Training: stage {stage}, lr={cfg.stage.get("lr")}, max_steps={cfg.trainer.get("max_steps")}, seed={cfg.get("seed")}
- Source run: a medvqa run; its `config.yaml` is copied here as `medvqa_config.yaml`
{_quantized(quantize)}
## Data
{data_line(cfg, samples)}

## Test metrics (from the run's metrics.json, adapter mode)
{metrics_table(metrics)}

## Merge check
{_check(check)}

## Intended use
Research on medical visual question answering: reproducing and comparing results, error analysis,
building and testing tools around such models on de-identified data.

## Limits
{LIMITS}

## Loading (no medvqa needed)
```python
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("<this folder>").eval()
processor = AutoProcessor.from_pretrained("<this folder>")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Is there a lesion?"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(text=[prompt], images=[Image.open("scan.png").convert("RGB")], return_tensors="pt")
out = model.generate(**inputs)  # generation_config.json: the greedy decoding the run was evaluated with
print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip())
```
"""


def _check(check: dict[str, Any]) -> str:
    if not check.get("items"):
        return "**Not checked** (check_items=0): the merged answers were not compared with the adapter's."
    line = f"Greedy answers of the merged model were compared with the adapter's on {check['items']} held-out test items: "
    change = check.get("max_first_token_logprob_change")
    moved = (
        f" The first answer token's log-probabilities moved by at most {change:.2g}."
        if change is not None
        else ""
    )
    if check.get("identical"):
        return line + "all identical." + moved
    forced = (
        " **Exported anyway (force=true)**: this model does not reproduce the run's answers."
        if check.get("forced")
        else ""
    )
    return line + f"**they differ**: {check.get('difference')}.{moved}{forced}"


def _quantized(quantize: dict[str, Any] | None) -> str:
    if not quantize:
        return ""
    return (f"- Quantized: {quantize['form']} weights ({quantize['library']}); loading needs {quantize['library']} "
            f"installed. Its greedy answers agree with full precision on {quantize['agreement']}.\n")  # fmt: skip
