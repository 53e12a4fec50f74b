"""How long the pre-flight token budget takes (medvqa/data/preflight.py), as JSON.

    python -m medvqa.bench preflight [data_dir=DIR] [rows=50000] [distinct_questions=20000]

1. The default run's training split (the synthetic set, 3360 rows): every sample measured with a fresh
   counter (cold caches: one header read per image file, the tokenizer on every distinct prompt).
2. A `rows`-row release made from it: the same image files, with `distinct_questions` different question
   texts (a real release repeats questions less than the synthetic set), fresh counter again.
"""

from __future__ import annotations

import copy
import time

from medvqa.data.preflight import TokenCounter


def run(data_dir: str = "data", rows: str = "50000", distinct_questions: str = "20000") -> dict:
    from hydra.utils import instantiate

    from medvqa.run import compose_config

    cfg = compose_config([f"paths.data_dir={data_dir}"], output_dir="/tmp/medvqa-bench-preflight")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    datamodule.processor = instantiate(cfg.model).processor
    hp, train = datamodule.hparams, datamodule.splits["train"]
    result = {"default": _measure(datamodule, train, hp)}
    n, k = int(rows), int(distinct_questions)
    big = []
    for i in range(n):
        s = copy.copy(train[i % len(train)])
        s.question = f"{s.question} (case {i % k})"
        big.append(s)
    result[f"rows_{n}"] = _measure(datamodule, big, hp)
    return result


def _measure(datamodule, samples, hp) -> dict:
    counter = TokenCounter(datamodule.collator(), hp.max_image_side, hp.window)
    started = time.perf_counter()
    budget = counter.measure(samples)
    return {
        "rows": len(samples),
        "seconds": round(time.perf_counter() - started, 3),
        "distinct_images": len(counter._sizes),
        "distinct_prompts": len(counter._text),
        "longest_tokens": budget.longest,
    }
