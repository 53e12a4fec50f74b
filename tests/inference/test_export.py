"""`medvqa.export`: the merged export loads and answers with plain transformers (no medvqa), a merge that
changes answers is refused naming the item, force=true overrides with a warning in the card, the card says
what the model is and must not be used for, and the write is atomic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medvqa.inference import merge
from medvqa.inference.export import RECORD, ExportRefused, export_run
from medvqa.run import compose_config, train
from tests.train_helpers import tiny_run

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "plain_transformers_answers.py"
# runs a script with medvqa unimportable (its editable install's finder is beaten by this one) and with
# no repository folder on sys.path
NO_MEDVQA = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "medvqa" or name.startswith("medvqa."):
            raise ImportError("medvqa is blocked in this process")
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".", {root!r})]
sys.argv = {argv!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def run_without_medvqa(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = NO_MEDVQA.format(root=str(ROOT), argv=[str(script), *args], script=str(script))
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "model"
    return out, export_run(run_dir, out, check_items=8)


def check_items_file(record, path: Path) -> Path:
    rows = [{"id": a.id, "question": a.question, "image": a.image, "adapter_answer": a.answer}
            for a in record["answers"]["adapter"]]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_export_answers_identically_with_plain_transformers_and_no_medvqa(exported, tmp_path):
    out, record = exported
    check = record["check"]
    assert (check["items"], check["identical"], check["forced"], check["difference"]) == (
        8,
        True,
        False,
        None,
    )
    assert check["max_first_token_logprob_change"] < 1e-3  # a right merge moves fp32 logits by rounding only
    items = check_items_file(record, tmp_path / "items.jsonl")
    done = run_without_medvqa(SCRIPT, [str(out), str(items), str(tmp_path / "a.jsonl"), "--expect",
                                       "adapter_answer", "--batch-size", "16"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 8 answers equal adapter_answer" in done.stdout
    answers = [json.loads(line)["answer"] for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert answers == [a.answer for a in record["answers"]["adapter"]]


def test_the_no_medvqa_runner_really_blocks_medvqa(tmp_path):
    script = tmp_path / "uses_medvqa.py"
    script.write_text("import medvqa\n")
    done = run_without_medvqa(script, [], tmp_path)
    assert done.returncode != 0 and "medvqa is blocked" in done.stderr


def test_processor_reloads_with_template_special_tokens_and_image_settings(exported, run_dir):
    from transformers import AutoProcessor

    from medvqa.models.runs import load_base

    out, _ = exported
    original, reloaded = (
        load_base(run_dir).processor,
        AutoProcessor.from_pretrained(out, local_files_only=True),
    )
    assert type(reloaded) is type(original)
    assert reloaded.chat_template == original.chat_template
    tok, orig_tok = reloaded.tokenizer, original.tokenizer
    assert (tok.eos_token, tok.pad_token) == (orig_tok.eos_token, orig_tok.pad_token)
    assert tok.get_vocab() == orig_tok.get_vocab()
    ip, orig_ip = reloaded.image_processor, original.image_processor
    assert ip.to_dict() == orig_ip.to_dict() and ip.size == orig_ip.size  # min/max pixels, patch, mean/std
    generation = json.loads((out / "generation_config.json").read_text())
    assert (
        generation["do_sample"] is False
        and generation["num_beams"] == 1
        and generation["max_new_tokens"] == 3
    )


def wrong_scaling(factor: float):
    """A merge that folds the adapter in with `factor` times its scaling (lora_alpha / r)."""
    real = merge.merge_adapter

    def broken(model):
        for module in model.modules():
            if isinstance(getattr(module, "scaling", None), dict):
                module.scaling = {name: value * factor for name, value in module.scaling.items()}
        return real(model)

    return broken


def test_a_merge_with_the_wrong_scaling_is_refused_naming_the_first_changed_item(
    run_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(merge, "merge_adapter", wrong_scaling(2.0))
    out = tmp_path / "model"
    with pytest.raises(ExportRefused) as refused:
        export_run(run_dir, out, check_items=8)
    message = str(refused.value)
    from medvqa.cli import is_user_error

    assert is_user_error(refused.value)  # the command prints it as its one Error line, exit 1
    assert (
        "force=true" in message
        and "first: item" in message
        and "adapter '" in message
        and "merged '" in message
    )
    assert not out.exists() and not any(tmp_path.iterdir())  # nothing written, no temporary folder left


def test_force_exports_a_changed_merge_with_a_warning_in_the_card(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(merge, "merge_adapter", wrong_scaling(2.0))
    record = export_run(run_dir, tmp_path / "model", check_items=8, force=True)
    assert record["check"]["forced"] and not record["check"]["identical"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Warning:** exported with force=true although the merge changed answers" in card
    assert "does not reproduce the run's answers" in card
    assert record["check"]["max_first_token_logprob_change"] > 1e-2


def test_model_card_names_base_data_config_metrics_use_and_limits(exported, run_dir):
    out, _ = exported
    card = (out / "README.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert "medvqa.models.tiny.build_tiny" in card and "hidden_size=32" in card  # base model
    assert "synthetic" in card and "split_by=official" in card  # data
    assert "LoRA, r=" in card and "max_steps=10" in card  # config
    assert f"| `test/closed_acc` | {metrics['test/closed_acc']:.4f} |" in card  # test metrics
    assert "## Intended use" in card and "Not a medical device" in card and "Research use only" in card
    assert "on 8 held-out test items: all identical" in card
    assert (out / "medvqa_config.yaml").read_text() == (run_dir / "config.yaml").read_text()


def test_the_shareable_card_names_no_local_path_and_every_file_is_world_readable(exported, run_dir):
    """The card is made to be shared: neither the run's folder nor the data's path is in it; the folder's
    files are 0644 (transformers writes the weights through a private 0600 temporary file)."""
    import yaml

    out, _ = exported
    card = (out / "README.md").read_text()
    data_root = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["root"]
    assert str(run_dir) not in card and str(data_root) not in card and str(run_dir.parent) not in card
    assert f"from a folder named `{Path(data_root).name}`" in card
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in out.iterdir()}
    assert set(modes.values()) == {"0o644"}, modes
    assert oct(out.stat().st_mode & 0o777) == "0o755"


def test_a_local_base_model_folder_is_named_not_pathed():
    from medvqa.inference.model_card import _no_path

    assert _no_path("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    assert _no_path("/models/qwen2-vl-7b") == "a local copy named `qwen2-vl-7b`"


def test_adapters_on_the_vision_tower_warn_about_servers_that_drop_them(exported):
    out, record = exported  # peft target_modules=all-linear reaches Qwen2-VL's `visual` blocks
    assert record["vision_adapter_modules"] > 0
    assert "vLLM serves LoRA on the language model only" in (out / "README.md").read_text()


def test_a_folder_that_is_not_an_export_is_never_replaced(run_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="out=.* is not a medvqa export"):
        export_run(run_dir, tmp_path, check_items=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_earlier_export_is_replaced_and_check_items_0_says_unchecked(exported, run_dir, tmp_path):
    out = tmp_path / "model"
    export_run(run_dir, out, check_items=0)
    (out / "stale.txt").write_text("from the first export")
    record = export_run(run_dir, out, check_items=0)
    assert record["check"]["items"] == 0 and not (out / "stale.txt").exists() and (out / RECORD).is_file()
    assert "**Not checked** (check_items=0)" in (out / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_folder_without_a_run_is_a_one_line_user_error(tmp_path):
    from medvqa.cli import is_user_error

    with pytest.raises(FileNotFoundError) as missing:
        export_run(tmp_path, tmp_path / "out")
    assert is_user_error(missing.value) and "run=" in str(missing.value)


def test_quantize_int8_export_reloads_quantized_with_plain_from_pretrained(run_dir, exported, tmp_path):
    from transformers import AutoModelForImageTextToText

    full, _ = exported
    out = tmp_path / "int8"
    record = export_run(run_dir, out, check_items=8, quantize="int8")
    assert record["quantize"]["form"] == "int8" and record["quantize"]["library"] == "torchao"
    assert record["quantize"]["items"] == 8
    model = AutoModelForImageTextToText.from_pretrained(out, device_map="cpu")
    assert type(model.model.language_model.layers[0].mlp.up_proj.weight).__module__.startswith("torchao")
    size = lambda folder: sum(f.stat().st_size for f in folder.glob("*.safetensors"))  # noqa: E731
    assert size(out) < size(full)
    card = (out / "README.md").read_text()
    assert (
        "Quantized: int8 weights (torchao)" in card
        and f"{record['quantize']['same']} of 8 checked items" in card
    )
    assert {oct(f.stat().st_mode & 0o777) for f in out.iterdir()} == {"0o644"}  # the int8 weights too


def test_the_printed_verdict_is_what_the_record_says():
    """An int8 export that kept 63 of 64 answers says so (it once printed "64 checked answers identical")."""
    from medvqa.export import verdict

    check = {"items": 64, "identical": True, "difference": None}
    quantize = {"form": "int8", "agreement": "63 of 64 checked items", "items": 64, "same": 63}
    said = verdict({"check": check, "quantize": quantize})
    assert (
        said
        == "64 checked answers identical after the merge; int8: 63 of 64 checked items agree with full precision"
    )
    assert verdict({"check": check, "quantize": None}) == "64 checked answers identical"
    assert "not compared" in verdict({"check": check | {"items": 0}, "quantize": quantize | {"items": 0}})


def medvqa_export(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "medvqa.export", *overrides], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_names_a_missing_run_in_one_line(tmp_path):
    done = medvqa_export(
        f"run={tmp_path}/nope", f"out={tmp_path}/out", f"hydra.run.dir={tmp_path}/h", cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"Error: run={tmp_path}/nope has no config.yaml")


@pytest.mark.slow
def test_cli_exports_and_records_the_checked_answers_in_its_own_folder(run_dir, tmp_path):
    done = medvqa_export(f"run={run_dir}", f"out={tmp_path}/out", "check_items=4", f"hydra.run.dir={tmp_path}/h",
                         "quantize=int8", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((tmp_path / "out" / RECORD).read_text())["quantize"]["agreement"]
    assert f"(4 checked answers identical after the merge; int8: {recorded} agree" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "h" / "export_check.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["adapter_answer"] == r["merged_answer"] for r in rows)
    assert (tmp_path / "out" / "config.json").is_file() and not list((tmp_path / "out").glob("*.jsonl"))


@pytest.mark.slow
def test_a_dora_run_exports_with_identical_answers(tmp_path, data_dir):
    run = tmp_path / "run"
    train(compose_config(tiny_run(data_dir, "peft.use_dora=true"), output_dir=run))
    record = export_run(run, tmp_path / "model", check_items=8)
    assert record["check"]["identical"] and "DoRA" in (tmp_path / "model" / "README.md").read_text()


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "paligemma"])
def test_every_tiny_family_saves_and_reloads_with_the_auto_classes_offline(tiny, family, tmp_path):
    """What an export writes (save_pretrained of model and processor) reloads through the Auto classes,
    giving the same prompt tokens, pixels and logits as the in-memory model and processor."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvqa.data.collate import VQACollator
    from medvqa.data.sample import VQASample
    from medvqa.stages.base import model_inputs

    vlm = tiny(family)
    vlm.model.save_pretrained(tmp_path)
    vlm.processor.save_pretrained(tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    assert type(model) is type(vlm.model) and type(processor) is type(vlm.processor)
    item = {"sample": VQASample(id="0", image="x", question="Is there a lesion?", answer="yes", answer_type="closed"),
            "image": Image.linear_gradient("L").resize((56, 56)).convert("RGB")}  # fmt: skip
    before, after = VQACollator(vlm.processor)([item]), VQACollator(processor)([item])
    assert torch.equal(before["prompt_input_ids"], after["prompt_input_ids"])
    assert torch.equal(before["pixel_values"], after["pixel_values"])
    inputs = {k: v for k, v in model_inputs(after).items() if k != "labels"}  # prompt + answer, images
    with torch.no_grad():
        assert torch.equal(vlm.model(**inputs).logits, model(**inputs).logits)


@pytest.mark.gpu
@pytest.mark.parametrize("form", ["int8", "int4"])
def test_quantized_export_on_cuda_goes_through_bitsandbytes(run_dir, tmp_path, form):
    from transformers import AutoModelForImageTextToText

    out = tmp_path / form
    record = export_run(run_dir, out, check_items=8, quantize=form, device="cuda")
    assert record["check"]["identical"] and record["quantize"]["library"] == "bitsandbytes"
    model = AutoModelForImageTextToText.from_pretrained(out, device_map="cuda")
    assert type(model.model.language_model.layers[0].mlp.up_proj).__module__.startswith("bitsandbytes")
