"""peft=qlora: a 4-bit NF4 base (bitsandbytes) with LoRA on top; CUDA only, refused at start-up elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import medvqa.models.builders as builders
import medvqa.models.qlora as qlora
import medvqa.models.tiny as tiny
from medvqa.cli import is_user_error
from medvqa.run import ROOT_DIR, compose_config

cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)


def test_peft_qlora_is_lora_on_an_nf4_base():
    cfg = compose_config(["peft=qlora", "model=qwen2_vl_2b"])
    lora = compose_config(["peft=lora"]).peft
    assert cfg.model.quantization == "nf4"
    assert cfg.peft == lora  # the same adapter as peft=lora: only the base's storage changes
    config = qlora.bnb_config()
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert compose_config(["peft=lora"]).model.quantization is None  # only qlora quantizes


@cpu_only
def test_python_m_medvqa_run_peft_qlora_on_cpu_stops_at_start_up_with_one_line(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT_DIR)}
    env.pop("HYDRA_FULL_ERROR", None)
    data = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "medvqa.run", "peft=qlora", f"paths.data_dir={data}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT_DIR, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Error: {qlora.NO_CUDA}"
    assert done.stderr.count("Error") == 1, done.stderr
    assert not data.exists()  # before the data was read (the synthetic set generated), let alone the model


@cpu_only
def test_every_builder_refuses_4bit_without_cuda_before_loading_anything(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("looked for the checkpoint")

    monkeypatch.setattr(builders, "_source", must_not_run)
    for build in (lambda: builders.from_pretrained("Qwen/Qwen2-VL-2B-Instruct", quantization="nf4"),
                  lambda: tiny.build_tiny(quantization="nf4")):  # fmt: skip
        with pytest.raises(ValueError, match="peft=qlora needs a CUDA GPU") as caught:
            build()
        assert is_user_error(caught.value)  # one line and exit 1 through medvqa.cli.user_errors


def test_an_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="model.quantization='int3'"):
        qlora.check_quantization("int3")


def test_a_4bit_tiny_model_trains_its_lora_adapter(monkeypatch):
    """The load path (save, reload through from_pretrained with the NF4 config, prepare_model_for_kbit_training)
    on bitsandbytes' CPU backend where it is installed (the `qlora` extra); CI skips it."""
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig

    from medvqa.data.collate import VQACollator
    from medvqa.models.freeze import LANGUAGE_LINEAR
    from medvqa.models.peft import apply_peft
    from medvqa.stages.base import model_inputs
    from tests.train_helpers import items

    monkeypatch.setattr(qlora, "check_quantization", lambda q: None)  # bitsandbytes on CPU here
    monkeypatch.setattr(qlora, "quantized_kwargs", lambda q: {"quantization_config": qlora.bnb_config(),
                                                               "dtype": torch.bfloat16, "device_map": {"": "cpu"}})  # fmt: skip
    vlm = tiny.build_tiny(hidden_size=64, num_layers=1, vision_depth=1, quantization="nf4")
    import bitsandbytes as bnb

    q_proj = vlm.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit) and q_proj.weight.dtype == torch.uint8
    model = apply_peft(vlm.model, LoraConfig(r=4, target_modules=LANGUAGE_LINEAR))
    model(**model_inputs(VQACollator(vlm.processor)(items(2)))).loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.grad is not None for p in trainable.values())
    # B starts at zero, so only B gets a gradient at the first step, through the 4-bit base's output
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n)


@pytest.mark.gpu
def test_qlora_trains_20_steps_on_a_gpu_and_reports_peak_memory(tmp_path):
    from medvqa.run import train
    from tests.train_helpers import tiny_run

    torch.cuda.reset_peak_memory_stats()
    cfg = compose_config(tiny_run(tmp_path / "data", "peft=qlora", "trainer=gpu", "precision=bf16",
                                  "trainer.max_steps=20", "model.hidden_size=64"), tmp_path / "run")  # fmt: skip
    metrics = train(cfg)
    peak = torch.cuda.max_memory_allocated()
    print(f"qlora tiny: 20 steps, peak {peak / 2**20:.1f} MiB, test {metrics['test']}")
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert peak > 0
