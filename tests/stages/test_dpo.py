"""DPOModule: the reference is the adapter-off model, log-probs cover answer tokens only, and training on
pairs separates chosen from rejected."""

import copy
from unittest import mock

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image

from medvqa.data.collate import VQACollator
from medvqa.data.preference import PairCollator
from medvqa.data.sample import VQASample
from medvqa.io import save_adapter
from medvqa.losses.dpo import dpo_loss, sequence_logps
from medvqa.run import build, compose_config, make_trainer
from medvqa.stages.base import model_inputs
from medvqa.stages.dpo import DPOModule, answer_logps

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56",
        "data.reader.image_size=56", "data.reader.n_patients=30", "data.reader.images_per_patient=2",
        "data.batch_size=4", "++data.limit={train: 8, val: 4, test: 4}", "stage.max_new_tokens=2",
        "callbacks=none", "trainer.val_check_interval=null", "++trainer.limit_val_batches=0"]  # fmt: skip


def _pairs_batch(processor):
    rng = np.random.default_rng(0)
    items = []
    for i, (chosen, rejected) in enumerate([("yes", "no"), ("left lung", "right"), ("no", "yes")]):
        image = Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8))
        sample = VQASample(id=str(i), image="x", question=f"Question {i}?", answer=chosen)
        items.append({"sample": sample, "image": image, "rejected": rejected, "source": "mined"})
    return PairCollator(VQACollator(processor))(items)


def _with_adapter(vlm, seed=0):
    """A deep copy of the base model, and the model wrapped in LoRA whose B matrices are non-zero
    (a fresh LoRA is the identity; this one changes the outputs)."""
    base = copy.deepcopy(vlm.model)
    model = get_peft_model(
        copy.deepcopy(vlm.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return base.eval(), model.eval()


def _module(model, processor, **kw):
    return DPOModule(model, processor, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2), **kw)


def test_reference_pass_uses_adapter_off_weights(tiny):
    vlm = tiny("qwen2_vl")
    base, model = _with_adapter(vlm)
    inputs = model_inputs(_pairs_batch(vlm.processor))
    module = _module(model, vlm.processor)
    reference = module.reference_logps(inputs)
    with torch.no_grad():
        expected = answer_logps(base, inputs)  # the untouched base model, a separate copy
        policy = answer_logps(model, inputs)
    assert torch.allclose(reference, expected, atol=1e-5)
    # the policy really differs, so a reference computed with the adapter on would fail the check above
    assert (policy - expected).abs().min() > 1e-2
    # and the adapter is back on afterwards
    assert torch.allclose(answer_logps(model, inputs), policy, atol=1e-6)


def test_answer_logps_equal_full_sequence_sum_over_answer_tokens(tiny):
    vlm = tiny("qwen2_vl")
    _, model = _with_adapter(vlm)
    inputs = model_inputs(_pairs_batch(vlm.processor))
    with torch.no_grad():
        full = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        assert torch.allclose(answer_logps(model, inputs), sequence_logps(full, inputs["labels"]), atol=1e-5)
        # changing a prompt token changes nothing that is masked... but changing only the padding does nothing
        padded = dict(inputs)
        padded["input_ids"] = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, 7)
        assert torch.allclose(answer_logps(model, padded), answer_logps(model, inputs), atol=1e-5)


def test_needs_an_adapter_for_its_reference(tiny):
    with pytest.raises(ValueError, match="peft=lora"):
        _module(copy.deepcopy(tiny("qwen2_vl").model), tiny("qwen2_vl").processor)


def test_bad_loss_type_fails_at_construction(tiny):
    vlm = tiny("qwen2_vl")
    _, model = _with_adapter(vlm)
    with pytest.raises(ValueError, match="stage.loss_type"):
        _module(model, vlm.processor, loss_type="kto")


def test_training_on_pairs_separates_chosen_from_rejected(tiny):
    vlm = tiny("qwen2_vl")
    model = get_peft_model(
        copy.deepcopy(vlm.model), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    )
    module = _module(model, vlm.processor, beta=0.5)
    batch = _pairs_batch(vlm.processor)
    inputs = model_inputs(batch)
    optimizer = module.configure_optimizers()
    model.train()
    module.window_mean = lambda total, count: total / count  # no Trainer here to keep the window
    for step in range(8):
        loss = module.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pol, ref = answer_logps(model, inputs), module.reference_logps(inputs)
    margins = (pol[:3] - ref[:3]) - (pol[3:] - ref[3:])  # 0 for every pair before training (LoRA B = 0)
    assert (margins > 0.5).all(), margins


def test_ipo_loss_does_not_depend_on_answer_length(tiny):
    """A 1-token pair and a pair of a long chosen and a short rejected answer, with the same per-token
    log-ratios (policy - reference: +0.5 per chosen token, -0.5 per rejected token): per-token h = 1 for
    both, so both losses are (1 - 1 / (2 * 0.1))^2 = 16. Summed log-ratios would give the long pair h = 0.5
    * (its chosen tokens + 1) and a different loss."""
    vlm = tiny("qwen2_vl")
    _, model = _with_adapter(vlm)
    module = _module(model, vlm.processor, beta=0.1, loss_type="ipo")
    rng = np.random.default_rng(0)
    items = [
        {"sample": VQASample(id=str(i), image="x", question="Where?", answer=chosen),
         "image": Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)), "rejected": "no",
         "source": "mined"}
        for i, chosen in enumerate(["yes", "left lower lobe of the lung with a small effusion"])
    ]  # fmt: skip
    batch = PairCollator(VQACollator(vlm.processor))(items)
    tokens = (batch["labels"][:, 1:] != -100).sum(-1).float()
    assert tokens[1] > 5 * tokens[0]  # the long answer really is long
    per_token_policy = torch.tensor([-1.0, -1.0, -2.0, -2.0])
    module.reference_logps = lambda inputs: -1.5 * tokens
    module.window_mean = lambda total, count: total / count  # no Trainer here to keep the window
    with (
        mock.patch("medvqa.stages.dpo.answer_logps", lambda model, inputs: per_token_policy * tokens),
        mock.patch("medvqa.stages.dpo.dpo_loss", wraps=dpo_loss) as loss_fn,
    ):
        mean = module.training_step(batch, 0)
    per_pair = dpo_loss(*loss_fn.call_args.args, **loss_fn.call_args.kwargs)[0]
    assert per_pair.tolist() == pytest.approx([16.0, 16.0]) and float(mean) == pytest.approx(16.0)


def _sft_adapter(cfg, path):
    """A non-zero adapter on the config's tiny model, saved as an SFT run saves its adapter/."""
    torch.manual_seed(1)
    vlm = instantiate(cfg.model)
    lora = get_peft_model(vlm.model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(str(path))


@pytest.mark.parametrize("reference", ["init", "base", None])
def test_first_step_from_an_sft_adapter_has_zero_margin(reference, tmp_path, data_dir):
    """Standard DPO (and TRL) compares with the starting policy: at step 0 policy = reference, so every
    implicit reward is 0 and no pair counts as won. stage.reference=base compares with the base model under
    the SFT adapter instead (margin not 0). The saved adapter/ holds only the trained adapter, loadable as
    the default one, and checkpoints only trainable weights. None: the config's default, which must be init
    (this case fails on the code before stage.reference existed, which took the base)."""
    overrides = [*TINY, f"paths.data_dir={data_dir}", "stage=dpo", "trainer.max_steps=1",
                 f"stage.init_adapter={tmp_path / 'sft'}"] + ([f"stage.reference={reference}"] if reference else [])  # fmt: skip
    cfg = compose_config(overrides, output_dir=tmp_path / "dpo")
    _sft_adapter(cfg, tmp_path / "sft")
    model, datamodule, module = build(cfg)
    trainer = make_trainer(cfg, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    margin, acc = (float(trainer.callback_metrics[f"train/{k}"]) for k in ("reward_margin", "reward_acc"))
    if reference in ("init", None):
        assert abs(margin) < 1e-6 and acc <= 0.5, (margin, acc)
        assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(np.log(2), abs=1e-5)
    else:
        assert abs(margin) > 1e-3, margin
    # the reference pass left the trained adapter active and trainable, the reference frozen
    assert model.active_adapter == "default"
    assert all(p.requires_grad == (".default." in n) for n, p in model.named_parameters() if "lora_" in n)
    save_adapter(model, tmp_path / "dpo" / "adapter")
    assert not (tmp_path / "dpo" / "adapter" / "reference").exists()
    loaded = PeftModel.from_pretrained(instantiate(cfg.model).model, str(tmp_path / "dpo" / "adapter"))
    trained = {n: p for n, p in model.named_parameters() if ".default." in n}
    for name, value in loaded.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(value, trained[name])
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    lora_keys = {k for k in state if "lora_" in k}
    assert lora_keys and all(".default." in k for k in lora_keys)
