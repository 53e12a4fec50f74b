"""Benchmarks: `python -m medvqa.bench <name> [key=value ...]`, each prints one JSON object."""

BENCHES = {
    "sft": "medvqa.bench.sft",
}
