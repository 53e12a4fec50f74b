"""Real-shaped models (medvqa/models/shapes.py, conf/model/*_shape.yaml): full-depth parameter counts equal
the published totals, the tokenizers have the real length and special-token ids, and each shape trains two
steps through `medvqa.run` with its decoder cut to two layers."""

from __future__ import annotations

import csv
import math

import pytest

from medvqa.models.shapes import make_tokenizer, meta_parameter_count
from medvqa.run import compose_config, train

# Published totals: the "Model size" of each checkpoint's Hugging Face page (its safetensors metadata), as
# issue 14 quotes them: Qwen/Qwen2-VL-2B-Instruct 2.21B, Qwen/Qwen2-VL-7B-Instruct 8.29B,
# Qwen/Qwen2.5-VL-3B-Instruct 3.75B, google/paligemma-3b-pt-224 2.92B. (The 2.21B was found again through the
# search tool on a page mirroring the hub metadata; the other three were not found there: they rest on the
# issue's figures, and each agrees with its config.json's architecture to 0.1%.)
PUBLISHED = {
    "qwen2_vl_2b_shape": 2.21e9,
    "qwen2_vl_7b_shape": 8.29e9,
    "qwen2_5_vl_3b_shape": 3.75e9,
    "paligemma_3b_shape": 2.92e9,
}


@pytest.mark.parametrize(("shape", "published"), PUBLISHED.items())
def test_full_depth_on_the_meta_device_has_the_published_parameter_count(shape, published):
    n = meta_parameter_count(compose_config([f"model={shape}"]).model)
    assert abs(n - published) / published < 0.01, (shape, n)


@pytest.mark.parametrize(("family", "length", "specials"), [
    ("qwen2_vl", 151657, {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<|vision_start|>": 151652,
                          "<|image_pad|>": 151655, "<|video_pad|>": 151656}),
    ("qwen2_5_vl", 151665, {"<|im_start|>": 151644, "<|image_pad|>": 151655, "<|file_sep|>": 151664}),
    ("paligemma", 257153, {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<loc0000>": 256000, "<seg127>": 257151,
                           "<image>": 257152}),
])  # fmt: skip
def test_the_local_tokenizer_has_the_real_length_and_special_ids(family, length, specials):
    tok = make_tokenizer(family)
    assert len(tok) == length
    assert {t: tok.convert_tokens_to_ids(t) for t in specials} == specials
    ids = tok("Is there a lesion in the left lung?").input_ids
    assert (
        max(ids) < 1000 and tok.decode(ids) == "Is there a lesion in the left lung?"
    )  # fillers never emitted


def test_the_qwen_chat_template_is_the_published_one():
    tok = make_tokenizer("qwen2_vl")
    text = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it a CT?"}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|image_pad|><|vision_end|>Is it a CT?<|im_end|>\n<|im_start|>assistant\n")  # fmt: skip


def shape_run(data_dir, shape: str, *extra: str) -> list[str]:
    """Two LoRA steps of `shape` cut to two decoder layers and two vision blocks, on 4 small images."""
    return [
        f"model={shape}", "model.num_layers=2", "model.vision_depth=2", "peft=lora", f"paths.data_dir={data_dir}",
        "data.reader.n_patients=30", "data.reader.images_per_patient=2", "data.reader.image_size=56",
        "data.batch_size=2", "data.eval_batch_size=4", "data.limit={train:4,val:2,test:2}",
        "stage.max_new_tokens=2", "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
        "eval_untrained=false",
        "callbacks.progress_bar=null", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("shape", [
    "qwen2_vl_2b_shape",
    pytest.param("qwen2_vl_7b_shape", marks=pytest.mark.slow),
    pytest.param("qwen2_5_vl_3b_shape", marks=pytest.mark.slow),
    pytest.param("paligemma_3b_shape", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_shaped_model_cut_to_two_layers_trains_two_steps_through_the_run(shape, tmp_path):
    cfg = compose_config(shape_run(tmp_path / "data", shape), tmp_path / "run")
    train(cfg)
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        losses = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r["train/loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for _, v in losses), losses
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "predictions.jsonl").read_text().count("\n") == 2
