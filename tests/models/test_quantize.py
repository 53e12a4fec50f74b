"""Quantized inference: int8 / int4 weight-only on CPU (torchao) shrink the model, keep its function close,
save and reload through plain `from_pretrained`; bitsandbytes on CUDA (marked gpu)."""

from __future__ import annotations

import json

import pytest
import torch

from medvqa.models.quantize import FORMS, load_quantized, quantization_config, quantize_model, weight_bytes
from medvqa.models.tiny import build_tiny


def folder_bytes(folder) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """The default run's tiny base (hidden 96, the size the default run exports) saved full precision."""
    vlm = build_tiny()
    folder = tmp_path_factory.mktemp("fp32")
    vlm.model.save_pretrained(folder)
    vlm.processor.save_pretrained(folder)
    return folder, vlm


def logits(model, processor) -> torch.Tensor:
    from PIL import Image

    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a lesion?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.linear_gradient("L").resize((56, 56)).convert("RGB")
    with torch.no_grad():
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
        return model(**inputs).logits[0, -1].float().cpu()


@pytest.mark.parametrize("form", FORMS)
def test_cpu_forms_quantize_every_linear_but_the_head_and_shrink_the_checkpoint(fp32, form, tmp_path):
    folder, vlm = fp32
    model = load_quantized(str(folder), form, "cpu")
    layer = model.model.language_model.layers[0].mlp.up_proj
    assert type(layer.weight).__module__.startswith("torchao"), type(layer.weight)
    assert type(model.model.visual.blocks[0].attn.qkv.weight).__module__.startswith("torchao")
    assert type(model.lm_head.weight) is torch.nn.Parameter  # the head stays full precision
    assert weight_bytes(model) < 0.6 * weight_bytes(vlm.model)
    model.save_pretrained(tmp_path)
    assert folder_bytes(tmp_path) < 0.6 * folder_bytes(folder)  # int4 on x86 is stored one value a byte


@pytest.mark.parametrize("form", FORMS)
def test_quantized_model_computes_nearly_the_same_function_and_reloads_exactly(fp32, form, tmp_path):
    from transformers import AutoModelForImageTextToText

    folder, vlm = fp32
    full = logits(vlm.model, vlm.processor)
    model = load_quantized(str(folder), form, "cpu")
    quantized = logits(model, vlm.processor)
    # random tiny weights (measured: int8 correlation 0.9995, int4 in groups of 32 0.86, over 566 logits)
    correlation = float(torch.corrcoef(torch.stack([quantized, full]))[0, 1])
    assert correlation > {"int8": 0.99, "int4": 0.7}[form]
    assert not torch.equal(quantized, full)  # it really is another (quantized) computation
    model.save_pretrained(tmp_path)
    assert (
        json.loads((tmp_path / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
    )
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path, device_map="cpu").eval()
    assert torch.equal(logits(reloaded, vlm.processor), quantized)


def test_quantize_model_merges_an_adapter_first_and_keeps_generation_config():
    from tests.train_helpers import tiny_lora

    model, processor = tiny_lora()
    with torch.no_grad():
        expected = logits(model.merge_and_unload(progressbar=False), processor)
    model, processor = tiny_lora()  # the same seeded adapter again (merge_and_unload consumed the first)
    model.base_model.model.generation_config.max_new_tokens = 7
    quantized = quantize_model(model, "int8", "cpu")
    assert not hasattr(quantized, "peft_config") and quantized.generation_config.max_new_tokens == 7
    merged_int8 = logits(quantized, processor)
    assert float(torch.corrcoef(torch.stack([merged_int8, expected]))[0, 1]) > 0.99


def test_unknown_form_or_device_is_a_user_error():
    from medvqa.cli import is_user_error

    for call in (lambda: quantization_config("int3"), lambda: quantization_config("int8", "mps")):
        with pytest.raises(ValueError) as bad:
            call()
        assert is_user_error(bad.value) and "quantize=" in str(bad.value)


@pytest.mark.gpu
@pytest.mark.parametrize("form", FORMS)
def test_cuda_forms_load_through_bitsandbytes(fp32, form, tmp_path):
    from transformers import AutoModelForImageTextToText

    folder, vlm = fp32
    model = load_quantized(str(folder), form, "cuda")
    layer = model.model.language_model.layers[0].mlp.up_proj
    assert type(layer).__module__.startswith("bitsandbytes"), type(layer)
    full, quantized = logits(vlm.model, vlm.processor), logits(model, vlm.processor)
    assert float(torch.corrcoef(torch.stack([quantized, full]))[0, 1]) > 0.7
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path, device_map="cuda")
    assert type(reloaded.model.language_model.layers[0].mlp.up_proj).__module__.startswith("bitsandbytes")
    assert folder_bytes(tmp_path) < 0.7 * folder_bytes(folder)
