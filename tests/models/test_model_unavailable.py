"""A model that cannot be had is one clear line at once: a missing local folder says so, and a hub id that
is neither cached nor reachable fails in seconds (no minutes of retries), without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import huggingface_hub.constants
import pytest
import transformers

from medvqa.models import builders
from medvqa.models.builders import ModelUnavailableError, from_pretrained, looks_like_path
from medvqa.run import ROOT_DIR


@pytest.fixture
def loads_recorded(monkeypatch):
    """Records every transformers load instead of doing it."""
    calls = []

    def record(name, **kwargs):
        calls.append((name, kwargs))
        raise OSError("stopped by the test")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", record)
    return calls


@pytest.mark.parametrize("name", ["/tmp/medvqa-no-such-model", "./no-such-model", "~/no-such-model"])
def test_a_missing_local_folder_says_it_does_not_exist(loads_recorded, name):
    with pytest.raises(ModelUnavailableError) as e:
        from_pretrained(name)
    assert f"model.name_or_path={name}: the folder " in str(e.value) and "does not exist" in str(e.value)
    assert "hf download" not in str(e.value) and not loads_recorded


def test_a_path_under_an_existing_folder_is_a_path_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert looks_like_path("outputs/merged") and looks_like_path("a/b/c")
    assert not looks_like_path("Qwen/Qwen2-VL-2B-Instruct")


def test_an_unreachable_hub_without_a_cached_copy_fails_before_any_download(
    loads_recorded, tmp_path, monkeypatch
):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(builders, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelUnavailableError) as e:
        from_pretrained("Qwen/Qwen2-VL-2B-Instruct")
    message = str(e.value)
    assert message.startswith(
        "model.name_or_path=Qwen/Qwen2-VL-2B-Instruct is not in the local Hugging Face cache"
    )
    assert "cannot be reached" in message and "HF_HUB_OFFLINE=1" in message and "\n" not in message
    assert not loads_recorded  # no retries: transformers is never asked


def test_an_unreachable_hub_loads_a_cached_copy_from_the_cache(loads_recorded, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    monkeypatch.setattr(builders, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelUnavailableError, match="is not in the local Hugging Face cache"):
        from_pretrained("Qwen/Qwen2-VL-2B-Instruct")
    assert loads_recorded and loads_recorded[0][1]["local_files_only"] is True


def test_hub_reachable_is_false_for_a_closed_port(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    assert builders.hub_reachable(timeout=1.0) is False


def test_the_cli_answers_an_uncached_hub_model_offline_with_one_line(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT_DIR), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "medvqa.run", "model=qwen2_vl_2b", f"hydra.run.dir={tmp_path / 'run'}",
               f"paths.data_dir={tmp_path / 'data'}", "data.reader.n_patients=30",
               "data.reader.images_per_patient=2", "data.reader.image_size=56"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "rror:" in line]
    assert errors == [done.stderr.strip().splitlines()[-1]], done.stderr
    assert errors[0].startswith("Error: model.name_or_path=Qwen/Qwen2-VL-2B-Instruct is not in the local")
