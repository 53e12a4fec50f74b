"""trainer=ddp / trainer=fsdp: configs compose with the checkpoint plugin; DDP on 2 CPU processes trains the
same weights on both ranks, scores every test question once and leaves one copy of each run file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from omegaconf import OmegaConf
from peft import PeftModel

from medvqa.callbacks.checkpoint_io import AtomicCheckpointIO
from medvqa.callbacks.rank_agreement import trainable_digest
from medvqa.models.tiny import build_tiny
from medvqa.run import ROOT_DIR, compose_config, make_trainer
from tests.experiment_helpers import TINY

DIGEST = re.compile(r"rank (\d)/2 trainable weights sha256 ([0-9a-f]{64})")


def test_ddp_config_hands_the_atomic_checkpoint_plugin_to_the_strategy(tmp_path):
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu"], tmp_path)
    trainer = make_trainer(cfg)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # rank 0 writes through it
    assert cfg.trainer.precision == "32-true" and cfg.trainer.max_steps == 3000  # gpu.yaml underneath


def test_fsdp_config_wraps_each_transformer_block_of_the_tiny_model(tmp_path, tiny):
    cfg = compose_config(["trainer=fsdp", "precision=bf16"], tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    strategy = instantiate(cfg.trainer.strategy, checkpoint_io=AtomicCheckpointIO())
    assert isinstance(strategy, FSDPStrategy) and isinstance(strategy.checkpoint_io, AtomicCheckpointIO)
    assert strategy._state_dict_type == "full"  # the format that goes through checkpoint_io
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    policy = strategy.kwargs["auto_wrap_policy"]
    wrapped = {
        type(m).__name__ for m in tiny("qwen2_vl").model.modules() if type(m) in policy._module_classes
    }
    assert wrapped == {"Qwen2VLDecoderLayer", "Qwen2VLVisionBlock"}


def test_trainable_digest_sees_one_changed_trainable_weight_and_ignores_frozen_ones():
    def module():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
        m[0].requires_grad_(False)
        return m

    a, b = module(), module()
    assert trainable_digest(a) == trainable_digest(b)
    with torch.no_grad():
        b[0].weight[0, 0] += 1.0  # frozen
    assert trainable_digest(a) == trainable_digest(b)
    with torch.no_grad():
        b[1].weight[0, 0] += 1e-6
    assert trainable_digest(a) != trainable_digest(b)


def _run_ddp(out: Path, data_dir: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medvqa.run", *TINY, "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.max_steps=4", "test_weights=last", "eval_untrained=true",
           "data.limit={val: 4, test: 7}",  # odd: a padding sampler would score one question twice
           f"paths.data_dir={data_dir}", f"hydra.run.dir={out}", *extra]  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT_DIR)}
    return subprocess.run(cmd, cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # ~40 s: two processes each start Python, torch and the tiny model
def test_ddp_on_two_cpu_processes_agrees_across_ranks_and_rank_zero_writes(tmp_path, data_dir, tiny):
    out = tmp_path / "run"
    done = _run_ddp(out, data_dir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    # both ranks ended fit with the same trainable weights, and they are the weights rank 0 saved
    digests = dict(DIGEST.findall(done.stdout + done.stderr))
    assert set(digests) == {"0", "1"}, done.stdout[-2000:]
    assert digests["0"] == digests["1"]
    base = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model
    holder = torch.nn.Module()
    holder.model = PeftModel.from_pretrained(base, str(out / "adapter"), is_trainable=True)
    assert trainable_digest(holder) == digests["0"]

    # one copy of each run file; rank 1 leaves only its log (Lightning names it train_ddp_process_1.log)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        ".hydra", "adapter", "checkpoints", "config.yaml", "csv", "metrics.json", "predictions.jsonl",
        "run.log", "run_info.json", "train_ddp_process_1.log",
    ])  # fmt: skip
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt", "step000002.ckpt"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert DIGEST.findall((out / "run.log").read_text()) == [("0", digests["0"])]
    assert DIGEST.findall((out / "train_ddp_process_1.log").read_text()) == [("1", digests["1"])]

    # every test question scored exactly once, in the split's order, as on one process
    cfg = OmegaConf.load(out / "config.yaml")
    datamodule = instantiate(cfg.data, processor=tiny("qwen2_vl").processor)
    datamodule.setup("test")
    ids = [row["id"] for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())]
    assert ids == [s.id for s in datamodule.splits["test"]] and len(ids) == 7
    run_info = json.loads((out / "run_info.json").read_text())
    assert run_info["samples"]["test"] == 7
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"untrained", "val", "test"} <= set(metrics)


@pytest.mark.slow  # ~40 s
def test_ddp_pipeline_chains_stages_on_both_ranks(tmp_path, data_dir):
    """exp4_curriculum under DDP runs all three stages (each loads the adapter rank 0 wrote for the stage
    before: the barrier after writing keeps rank 1 from reading it early), both ranks agree after every
    stage, and the summary lists the stages."""
    out = tmp_path / "run"
    done = _run_ddp(
        out, data_dir, ["experiment=exp4_curriculum", "pipeline.max_steps=2", "eval_untrained=false"]
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    found = DIGEST.findall(done.stdout + done.stderr)
    per_stage = [dict(found[i : i + 2]) for i in range(0, len(found), 2)]
    assert len(per_stage) == 3 and all(set(s) == {"0", "1"} and s["0"] == s["1"] for s in per_stage)
    assert len({s["0"] for s in per_stage}) == 3  # every stage trained on
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["easy", "medium", "hard"]
    for stage in summary["stages"]:
        assert (out / stage["dir"] / "adapter" / "adapter_model.safetensors").is_file()
        assert not (out / stage["dir"] / "train_ddp_process_1.log").exists()


def test_adapter_is_saved_from_a_given_state_dict_not_the_models_own_weights(tmp_path):
    """Under FSDP rank 0 saves the adapter from the gathered full state (run.gathered_model_state strips
    the stage's `model.` prefix): the file must hold those weights even when the model's own are shards."""
    from peft import LoraConfig, get_peft_model

    from medvqa.io import save_adapter

    def tiny_base():
        return build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=56).model

    holder = torch.nn.Module()
    holder.model = get_peft_model(tiny_base(), LoraConfig(r=4, target_modules=["q_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in holder.model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    full = {k.removeprefix("model."): v.clone() for k, v in holder.state_dict().items()}
    with torch.no_grad():
        for p in holder.model.parameters():
            p.zero_()  # what a rank sees of weights that live in other ranks' shards
    save_adapter(holder.model, tmp_path / "adapter", full)
    loaded = PeftModel.from_pretrained(tiny_base(), str(tmp_path / "adapter"))
    lora_b = {n: p for n, p in loaded.named_parameters() if "lora_B" in n}
    assert lora_b and all(torch.equal(p, full[n]) for n, p in lora_b.items())
