"""Tiny offline models for each family, loading by local path, the offline error, and peft wiring."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from peft import LoraConfig

from medvqa.models.builders import ModelUnavailableError, from_pretrained
from medvqa.models.peft import apply_peft
from medvqa.models.tiny import build_tiny
from medvqa.run import CONF_DIR as CONF_ROOT


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "paligemma"])
def test_tiny_build_is_deterministic_and_real_transformers_classes(family, tiny):
    a = tiny(family)
    b = build_tiny(family, hidden_size=32, num_layers=1, vision_depth=1, image_size=56)
    assert type(a.model).__module__.startswith("transformers.models.")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.processor.tokenizer.pad_token_id is not None


def test_local_path_roundtrip_through_auto_classes(tiny, tmp_path):
    vlm = tiny("qwen2_vl")
    vlm.model.save_pretrained(tmp_path)
    vlm.processor.save_pretrained(tmp_path)
    loaded = from_pretrained(str(tmp_path), dtype="fp32")
    assert type(loaded.model) is type(vlm.model) and loaded.family == "qwen2_vl"
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(loaded.model(input_ids=ids).logits, vlm.model(input_ids=ids).logits)


def test_unavailable_hub_id_gives_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        from_pretrained("Qwen/Qwen2-VL-7B-Instruct-not-cached")
    message = str(err.value)
    assert "Qwen/Qwen2-VL-7B-Instruct-not-cached" in message and "model.name_or_path=DIR" in message


@pytest.mark.parametrize(
    "name", ["qwen2_vl_2b", "qwen2_vl_7b", "qwen2_5_vl_3b", "qwen2_5_vl_7b", "paligemma_3b"]
)
def test_hub_model_configs_load_through_the_builder(name):
    cfg = OmegaConf.load(CONF_ROOT / "model" / f"{name}.yaml")
    assert cfg._target_ == "medvqa.models.builders.from_pretrained" and "/" in cfg.name_or_path


def test_lora_trains_only_adapters_and_none_trains_everything(tiny):
    model = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model
    lora = apply_peft(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"), None)
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any("visual" in n for n in names) and any("language_model" in n for n in names)
    plain = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model
    assert all(p.requires_grad for p in apply_peft(plain, None, None).parameters())


def test_dora_switch_reaches_peft(tiny):
    model = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model
    dora = apply_peft(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=True), None)
    assert any("lora_magnitude_vector" in n for n, _ in dora.named_parameters())
