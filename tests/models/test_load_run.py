"""A run's model again: the documented snippet (docs/models.md, as written) loads a default run's adapter
onto its rebuilt base, and build_tiny()'s defaults are the tiny configs'."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from omegaconf import OmegaConf
from peft import PeftModel
from safetensors.torch import load_file

from medvqa.models.tiny import build_tiny
from medvqa.run import ROOT_DIR, compose_config, train
from tests.train_helpers import tiny_run

DOCS = [ROOT_DIR / "docs" / "models.md", ROOT_DIR / "README.md"]
RUN_LINE = 'run = "outputs/2025-01-01/12-00-00"'


def snippet(doc) -> str:
    """The python block of the doc's `load_base` section, exactly as written."""
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "load_base" in b]
    assert RUN_LINE in block
    return block


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """A 2-step run of the default model at its config's size (no model.* overrides)."""
    data = tmp_path_factory.mktemp("data")
    overrides = [o for o in tiny_run(data, "trainer.max_steps=2") if not o.startswith("model.")]
    out = tmp_path_factory.mktemp("run")
    train(compose_config(overrides, output_dir=out))
    return out


@pytest.mark.parametrize("name", ["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_paligemma"])
def test_build_tiny_defaults_are_the_tiny_configs(name):
    conf = OmegaConf.load(ROOT_DIR / "conf" / "model" / f"{name}.yaml")
    defaults = {k: p.default for k, p in inspect.signature(build_tiny).parameters.items()}
    assert {k: v for k, v in conf.items() if k not in ("_target_", "family")} == {
        k: v for k, v in defaults.items() if k != "family"
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_documented_snippet_loads_the_runs_trained_adapter(default_run, doc):
    scope: dict = {}
    exec(snippet(doc).replace(RUN_LINE, f'run = "{default_run}"'), scope)
    saved = load_file(default_run / "adapter" / "adapter_model.safetensors")
    for model in (scope["model"], scope["vlm"].model):
        assert isinstance(model, PeftModel)
        loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
        assert len(loaded) == len(saved) and any(
            p.abs().sum() > 0 for n, p in loaded.items() if "lora_B" in n
        )
        for key, tensor in saved.items():  # peft saves without the adapter name
            name = key.replace(".weight", ".default.weight")
            assert torch.equal(loaded[name], tensor), key
    assert scope["vlm"].processor is not None


def test_the_readme_promise_holds_with_build_tinys_defaults(default_run):
    model = PeftModel.from_pretrained(build_tiny().model, str(default_run / "adapter"))
    assert any("lora_A" in n for n, _ in model.named_parameters())
