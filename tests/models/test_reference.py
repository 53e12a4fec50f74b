"""The reference policy of DPO and GRPO (medvqa/models/peft.py: apply_peft's frozen reference adapter and
reference_pass): the starting policy by default, the adapter-off base with stage.reference=base."""

import copy

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from medvqa.data.collate import VQACollator
from medvqa.data.sample import VQASample
from medvqa.models.peft import apply_peft, check_reference, reference_pass
from medvqa.stages.base import model_inputs
from medvqa.stages.grpo import GRPOModule


def _batch(processor):
    rng = np.random.default_rng(0)
    items = [{"sample": VQASample(id=str(i), image="x", question="Is there a lesion?", answer="yes"),
              "image": Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))} for i in range(2)]  # fmt: skip
    return VQACollator(processor)(items)


def _from_sft_adapter(vlm, tmp_path, reference=True):
    """The base model under a saved non-zero adapter (an SFT run's adapter/), dropout on."""
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_dropout=0.5, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(copy.deepcopy(vlm.model), config).save_pretrained(str(tmp_path / "sft"))
    return apply_peft(copy.deepcopy(vlm.model), None, str(tmp_path / "sft"), reference=reference)


def _logits(model, batch):
    return model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits


def test_init_reference_is_the_starting_adapter_without_dropout_and_training_state_comes_back(tiny, tmp_path):
    vlm = tiny("qwen2_vl")
    model = _from_sft_adapter(vlm, tmp_path).train()
    batch = _batch(vlm.processor)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)  # the reference copy is frozen
    with torch.no_grad():
        model.eval()
        start = _logits(model, batch)  # the starting policy, no dropout
        model.train()
        with reference_pass(model, "init"):
            reference = _logits(model, batch)
        with reference_pass(model, "base"), torch.no_grad():
            base = _logits(model, batch)
        with model.disable_adapter():
            off = _logits(model, batch)
    torch.testing.assert_close(reference, start)
    torch.testing.assert_close(base, off)
    assert (reference - base).abs().max() > 1e-3  # the two choices really differ here
    # back to the trained adapter, in train mode, with the same parameters trainable
    assert model.training and model.active_adapter == "default"
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable


def test_init_without_a_reference_adapter_is_the_adapter_off_model(tiny):
    """A fresh adapter (no stage.init_adapter) is the identity, so the adapter-off model is the start."""
    vlm = tiny("qwen2_vl")
    model = get_peft_model(copy.deepcopy(vlm.model), LoraConfig(r=4, target_modules="all-linear"))
    batch = _batch(vlm.processor)
    with torch.no_grad(), reference_pass(model, "init"):
        reference = _logits(model, batch)
    with torch.no_grad():
        torch.testing.assert_close(reference, _logits(model.eval(), batch))


def test_grpo_kl_reference_is_the_starting_policy(tiny, tmp_path):
    """GRPO (beta > 0) from an SFT adapter: before any update the reference log-probs are the policy's."""
    vlm = tiny("qwen2_vl")
    model = _from_sft_adapter(vlm, tmp_path).eval()
    module = GRPOModule(model, vlm.processor, optimizer=torch.optim.AdamW, beta=0.05, num_generations=2,
                        max_completion_length=4)  # fmt: skip
    rollout = module.sample(_batch(vlm.processor))
    with torch.no_grad():
        torch.testing.assert_close(module.reference_logps(rollout), module.completion_logps(rollout))
    module.reference = "base"
    with torch.no_grad():
        assert (module.reference_logps(rollout) - module.completion_logps(rollout)).abs().max() > 1e-3


def test_unknown_reference_names_the_key():
    with pytest.raises(ValueError, match="stage.reference='sft'"):
        check_reference("sft")
