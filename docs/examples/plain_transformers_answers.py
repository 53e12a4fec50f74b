"""Answer questions about images with an exported model and plain transformers: no medvqa import.

    python docs/examples/plain_transformers_answers.py EXPORT_DIR ITEMS.jsonl OUT.jsonl [--expect KEY]

ITEMS.jsonl: one {"id", "image", "question"} per line (the `export_check.jsonl` that `python -m medvqa.export`
writes into its own folder has them, with the answers the run's adapter gave as `adapter_answer`).
OUT.jsonl: the same rows with `answer`. With `--expect adapter_answer` the script compares its answers with
that field and exits 1, naming the first difference, when any differs.

The prompt is what medvqa's collator builds (default data.prompt_template, no system prompt): the model's
chat template over one image and the question, or PaliGemma's "<image>answer en {question}" prefix; images
are RGB, at most 1024 px on the longer side (data.max_image_side); prompts are left-padded and decoded
with the export's generation_config.json (the greedy decoding the run was evaluated with).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

MAX_SIDE = 1024


def prompt(processor, question: str) -> str:
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{getattr(processor, 'image_token', '<image>')}answer en {question}"


def image(path: str) -> Image.Image:
    img = Image.open(path).convert("RGB")
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
    return img


@torch.no_grad()
def answer(model, processor, rows: list[dict], batch_size: int) -> list[str]:
    answers = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        inputs = processor(text=[prompt(processor, r["question"]) for r in batch],
                           images=[image(r["image"]) for r in batch], return_tensors="pt", padding=True,
                           padding_side="left").to(model.device)  # fmt: skip
        out = model.generate(**inputs)
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += [t.strip() for t in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("items")
    parser.add_argument("out")
    parser.add_argument("--expect", default=None, help="field of ITEMS holding the answers to reproduce")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    model = AutoModelForImageTextToText.from_pretrained(args.export_dir).eval()
    processor = AutoProcessor.from_pretrained(args.export_dir)
    with open(args.items, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    answers = answer(model, processor, rows, args.batch_size)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps(r | {"answer": a}, sort_keys=True) + "\n" for r, a in zip(rows, answers, strict=True)
        )
    assert "medvqa" not in sys.modules, "this script must run without medvqa"
    if args.expect:
        diff = [(r, a) for r, a in zip(rows, answers, strict=True) if r[args.expect] != a]
        if diff:
            r, a = diff[0]
            print(f"{len(diff)} of {len(rows)} answers differ; first: item {r['id']!r}, question "
                  f"{r['question']!r}: expected {r[args.expect]!r}, got {a!r}")  # fmt: skip
            return 1
        print(f"all {len(rows)} answers equal {args.expect}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
