"""`python -m medvqa.bench train_step` (medvqa/bench/train_step.py) and its FLOP count (medvqa/bench/flops.py)
on CPU: the counting formula on a real backward, the memory estimate's parameter and optimizer parts against
the tensors' exact bytes, MFU null without a peak and exact with one, GRPO's time shares."""

from __future__ import annotations

import json

import pytest
import torch

from medvqa.bench.flops import FlopMeter, peak_tflops
from medvqa.bench.table import table
from medvqa.bench.train_step import run
from medvqa.data.collate import VQACollator
from medvqa.models.tiny import build_tiny
from medvqa.stages.base import model_inputs
from tests.train_helpers import items, tiny_lora


def counted_step(model, processor) -> FlopMeter:
    meter = FlopMeter(model, processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).attach()
    model.train()
    batch = model_inputs(VQACollator(processor)(items(2)))
    model(**batch).loss.backward()
    meter.detach()
    meter.patches = batch["pixel_values"].shape[0]  # Qwen: one row per 14x14x2 patch
    return meter


def test_full_fine_tuning_counts_a_weight_gradient_for_every_product_and_input_gradients_past_the_pixels():
    vlm = build_tiny(hidden_size=32, num_layers=1, vision_depth=1)
    meter = counted_step(vlm.model, vlm.processor)
    flops, conv = meter.flops["train"], vlm.model.model.visual.patch_embed.proj
    assert flops["backward_weight"] == flops["forward"]  # every weight trains
    # only the patch convolution's input (the pixels) needs no gradient: (3 x 2 x 14 x 14) -> 32 per patch
    per_patch = 2 * conv.in_channels * int(torch.tensor(conv.kernel_size).prod()) * conv.out_channels
    assert flops["forward"] - flops["backward_input"] == per_patch * meter.patches


def test_lora_counts_weight_gradients_for_the_adapter_only():
    model, processor = tiny_lora()  # r=4 on all linear layers of a 32-wide model
    meter = counted_step(model, processor)
    flops = meter.flops["train"]
    # the frozen base products (4x wider than r) cost forward and input gradients, never weight gradients
    assert 0 < flops["backward_weight"] < flops["forward"] / 2 < flops["backward_input"]
    assert meter.tokens["train"]["image"] > 0 and meter.tokens["train"]["text"] > 0


def test_the_peak_table_knows_the_common_gpus():
    assert peak_tflops("NVIDIA H200", "bf16") == 989.4 and peak_tflops("NVIDIA H200", "fp8") == 1978.9
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.5  # not the SXM figure
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp8") is None  # no fp8 units
    assert peak_tflops("NVIDIA L4", "bf16") == 121.0 and peak_tflops("cpu", "bf16") is None


def bench_options(tmp_path, **extra) -> dict[str, str]:
    return {
        "paths.data_dir": str(tmp_path / "data"), "data.reader.n_patients": "30",
        "data.reader.images_per_patient": "2", "data.reader.image_size": "56", "model.hidden_size": "32",
        "model.num_layers": "1", "model.vision_depth": "1", "data.batch_size": "2",
        "data.limit": "{train:8,val:2,test:2}", "stage.max_completion_length": "4", "stage.num_generations": "2",
        "bench.steps": "2", "bench.warmup": "1",
    } | extra  # fmt: skip


def test_sft_with_and_without_checkpointing_reports_throughput_flops_and_the_estimate_beside_memory(tmp_path):
    out = tmp_path / "sft.json"
    result = run(**bench_options(tmp_path, **{"bench.stages": "sft", "bench.checkpointing": "false,true",
                                             "bench.out": str(out)}))  # fmt: skip
    assert result["device"] == "cpu" and result["peak_tflops"] is None
    plain, checkpointed = result["runs"]
    assert (plain["gradient_checkpointing"], checkpointed["gradient_checkpointing"]) == (False, True)
    for r in result["runs"]:
        assert r["timed_steps"] == 2 and r["mfu"] is None and r["samples_per_s"] > 0
        assert r["tokens_per_s"]["image"] > 0 and r["tokens_per_s"]["text"] > 0
        memory = r["memory"]
        estimate, measured = memory["estimate_bytes"], memory["measured_bytes"]
        assert {k: estimate[k] for k in ("weights", "trainable", "optimizer")} == \
            {k: measured[k] for k in ("weights", "trainable", "optimizer")}  # fmt: skip
        assert measured["optimizer"] > 2 * measured["trainable"] > 0  # AdamW: two moments + a step per tensor
        assert memory["peak_bytes"] > estimate["weights"] and r["memory_line"].startswith("memory estimate: ")
    # the README table from the written JSON: a heading with date and device, one row per run
    lines = table([json.loads(out.read_text())]).splitlines()
    assert lines[0].startswith(f"Measured {result['date']}, cpu, ") and len(lines) == 4 + 2
    assert lines[-2].startswith("| sft | fp32 | default | false | 2 |") and "| n/a |" in lines[-2]
    # same batches, same model FLOPs: recomputation is not counted
    assert plain["model_flops_per_step"] == pytest.approx(checkpointed["model_flops_per_step"], rel=0.02)


def test_a_given_peak_gives_mfu_and_grpo_reports_generation_and_training_shares(tmp_path):
    result = run(**bench_options(tmp_path, **{"bench.stages": "grpo", "bench.checkpointing": "false",
                                             "bench.peak_tflops": "0.5"}))  # fmt: skip
    (r,) = result["runs"]
    assert result["peak_tflops"] == 0.5 and result["peak_source"] == "bench.peak_tflops"
    assert r["mfu"] == pytest.approx(r["achieved_tflops"] / 0.5, abs=2e-3)
    shares = r["time_share"]
    assert set(shares) == {"generation", "scoring", "training"} and sum(shares.values()) == pytest.approx(
        1, abs=1e-3
    )
    assert shares["generation"] > 0 and r["generation_flops_per_step"] > 0 and r["completions_per_s"] > 0


def test_an_unknown_bench_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown bench options"):
        run(**bench_options(tmp_path, **{"bench.stepz": "3"}))
