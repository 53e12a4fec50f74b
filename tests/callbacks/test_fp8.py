"""precision=fp8 refuses clearly where float8 cannot run (every CPU machine), before any model is built."""

import pytest
import torch
from hydra.utils import instantiate

import medvqa.run
from medvqa.callbacks.fp8 import convertible
from medvqa.run import compose_config as compose_cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_fp8_refuses_on_cpu_with_one_line_naming_the_hardware():
    cfg = compose_cfg(["precision=fp8"])
    assert cfg.trainer.precision == "bf16-mixed"
    with pytest.raises(Exception) as err:  # Hydra wraps it, naming the config key callbacks.fp8
        instantiate(cfg.callbacks.fp8)
    assert "callbacks.fp8" in str(err.value)
    message = str(err.value.__cause__ or err.value)
    assert isinstance(err.value.__cause__, RuntimeError) and "\n" not in message
    assert "compute capability 8.9" in message and "H100" in message and "no CUDA GPU" in message
    assert "precision=bf16" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_run_stops_at_start_up_before_building_the_model(monkeypatch, tmp_path):
    def build(cfg):
        raise AssertionError("the model was built before the precision check")

    monkeypatch.setattr(medvqa.run, "build", build)
    with pytest.raises(Exception, match="precision=fp8 needs an NVIDIA GPU"):
        medvqa.run.train(compose_cfg(["precision=fp8"], tmp_path))


def test_which_linear_layers_go_float8():
    assert convertible(torch.nn.Linear(64, 128), "model.layers.0.mlp.up_proj")
    assert not convertible(torch.nn.Linear(60, 128), "x")  # torchao needs multiples of 16
    assert not convertible(torch.nn.Linear(32, 32), "x")  # below min_features: no gain
    assert not convertible(torch.nn.Linear(64, 64), "q_proj.lora_A.default", skip=("lora_",))
    assert not convertible(torch.nn.Conv1d(64, 64, 1), "x")
