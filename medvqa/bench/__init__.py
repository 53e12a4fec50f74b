"""Benchmarks: `python -m medvqa.bench <name> [key=value ...]`, each prints one JSON object."""

BENCHES = {
    "sft": "medvqa.bench.sft",
    "data_rss": "medvqa.bench.data_rss",
    "data_padding": "medvqa.bench.data_padding",
    "grpo": "medvqa.bench.grpo",
    "preflight": "medvqa.bench.preflight",
    "quantize": "medvqa.bench.quantize",
    "train_step": "medvqa.bench.train_step",
    "eval": "medvqa.bench.eval",
    "predict": "medvqa.bench.predict",
    "dicom_frames": "medvqa.bench.dicom_frames",
    "vision_reuse": "medvqa.bench.vision_reuse",
}
