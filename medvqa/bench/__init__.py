"""Benchmarks: `python -m medvqa.bench <name> [key=value ...]`, each prints one JSON object."""

BENCHES = {
    "sft": "medvqa.bench.sft",
    "data_rss": "medvqa.bench.data_rss",
    "data_padding": "medvqa.bench.data_padding",
    "grpo": "medvqa.bench.grpo",
    "preflight": "medvqa.bench.preflight",
    "quantize": "medvqa.bench.quantize",
    "predict": "medvqa.bench.predict",
}
