"""GRPOModule: rollouts, the reference pass only when beta > 0, the format request in the prompt, rollout
replay with gradient accumulation, and a step that moves the policy toward rewarded completions."""

import copy
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image

from medvqa.data.collate import VQACollator
from medvqa.data.sample import VQASample
from medvqa.rewards.tags import INSTRUCTION
from medvqa.stages.grpo import GRPOModule, completion_mask, repeat_rows

PROMPTS = 2


def _items(n=PROMPTS):
    rng = np.random.default_rng(0)
    return [
        {
            "sample": VQASample(
                id=str(i),
                image="x",
                question="Is there a lesion?",
                answer="yes",
                answer_type="closed",
                plane="axial",
                modality="CT",
                caption="Axial CT.",
            ),  # fmt: skip
            "image": Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)),
        }
        for i in range(n)
    ]


def _module(vlm, **kw):
    model = get_peft_model(
        copy.deepcopy(vlm.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    )
    kw = {"num_generations": 3, "max_completion_length": 6, "reward_weights": {"answer_match": 1.0}} | kw
    return GRPOModule(model, vlm.processor, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2), **kw)


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_repeat_rows_keeps_each_prompt_with_its_own_image(tiny, family):
    vlm = tiny(family)
    from medvqa.stages.base import prompt_inputs

    inputs = prompt_inputs(VQACollator(vlm.processor)(_items(2)))
    out = repeat_rows(inputs, 3)
    assert out["input_ids"].shape[0] == 6
    assert torch.equal(out["input_ids"][2], inputs["input_ids"][0]) and torch.equal(
        out["input_ids"][3], inputs["input_ids"][1]
    )
    if family == "qwen2_vl":  # flattened patches: image 0's patches three times, then image 1's
        per_image = inputs["pixel_values"].shape[0] // 2
        assert out["pixel_values"].shape[0] == 6 * per_image
        assert torch.equal(
            out["pixel_values"][2 * per_image : 3 * per_image], inputs["pixel_values"][:per_image]
        )
        assert torch.equal(
            out["pixel_values"][3 * per_image : 4 * per_image], inputs["pixel_values"][per_image:]
        )
    else:
        assert torch.equal(out["pixel_values"][3], inputs["pixel_values"][1])


def test_completion_mask_stops_after_first_end_token():
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 2, 7, 0], [5, 6, 7, 8, 9]])
    assert completion_mask(ids, [2]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_rollout_shapes_and_one_generate_call(tiny):
    vlm = tiny("qwen2_vl")
    module = _module(vlm)
    batch = VQACollator(vlm.processor)(_items())
    with mock.patch.object(module.model, "generate", wraps=module.model.generate) as generate:
        rollout = module.sample(batch)
    assert generate.call_count == 1
    n = PROMPTS * 3
    assert rollout.completion_ids.shape[0] == n and rollout.completion_ids.shape[1] <= 6
    assert len(rollout.texts) == n and rollout.fields["answer"] == ["yes"] * n
    assert rollout.fields["id"] == ["0", "0", "0", "1", "1", "1"]  # a prompt's completions are adjacent
    assert module.model.training  # dropout state restored after sampling in eval mode


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_reference_pass_only_when_beta_is_positive(tiny, beta):
    vlm = tiny("qwen2_vl")
    module = _module(vlm, beta=beta)
    batch = VQACollator(vlm.processor)(_items())
    module.window_mean = lambda total, count: total / count  # no Trainer here to keep the window
    with mock.patch.object(module.model, "disable_adapter", wraps=module.model.disable_adapter) as off:
        loss = module.training_step(batch, 0)
    assert off.call_count == (1 if beta else 0)
    assert torch.isfinite(loss)


def test_step_raises_probability_of_rewarded_completions(tiny):
    """One rollout with fixed rewards: the loss's gradient step makes the above-average completions of each
    group more likely than before, relative to the below-average ones."""
    vlm = tiny("qwen2_vl")
    module = _module(vlm, num_generations=4, max_completion_length=5, temperature=1.0)
    module.model.train()
    batch = VQACollator(vlm.processor)(_items())
    rollout = module.sample(batch)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    rollout.rewards = rewards.unsqueeze(1)
    from medvqa.losses.grpo import group_advantages, grpo_loss

    rollout.advantages = group_advantages(rewards, 4)
    optimizer = module.configure_optimizers()
    before = (module.completion_logps(rollout) * rollout.mask).sum(1).detach()
    for _ in range(3):
        logp = module.policy_logps(rollout)
        total, count, _ = grpo_loss(logp, logp.detach(), rollout.advantages, rollout.mask)
        optimizer.zero_grad()
        (total / count).backward()
        optimizer.step()
    change = (module.completion_logps(rollout) * rollout.mask).sum(1).detach() - before
    assert change[rewards == 1].mean() > change[rewards == 0].mean() + 0.5


def test_format_request_in_prompt_only_with_format_reward(tiny):
    vlm = tiny("qwen2_vl")
    for weights, asked in [
        ({"answer_match": 1.0, "format": 0.5}, True),
        ({"answer_match": 1.0, "format": 0.0}, False),
    ]:
        module = _module(vlm, reward_weights=weights)
        datamodule = SimpleNamespace(instruction=None)
        module._trainer = SimpleNamespace(datamodule=datamodule)
        module.setup("fit")
        assert (datamodule.instruction == INSTRUCTION) is asked
        collator = VQACollator(vlm.processor, instruction=datamodule.instruction)
        assert ("<answer>" in collator.prompt_text(_items(1)[0]["sample"])) is asked
    assert module.answer_from("<think>a</think><answer>no</answer>") == "no"


def test_replay_for_num_iterations_follows_accumulation(tiny):
    """accumulate 2, num_iterations 2: micro-batches 0,1 sample; 2,3 replay them in the same order; 4,5 sample."""
    module = _module(tiny("qwen2_vl"), num_iterations=2)
    seen = []
    for micro in range(6):
        module._trainer = SimpleNamespace(accumulate_grad_batches=2, global_step=micro // 2)
        rollout = module.replayed_rollout(micro)
        if rollout is None:
            rollout = f"rollout{micro}"
            module.remember(rollout)
        seen.append(rollout)
    assert seen == ["rollout0", "rollout1", "rollout0", "rollout1", "rollout4", "rollout5"]


def test_bad_settings_fail_at_construction(tiny):
    vlm = tiny("qwen2_vl")
    with pytest.raises(ValueError, match="num_generations"):
        _module(vlm, num_generations=1)
    with pytest.raises(ValueError, match="scale_rewards"):
        _module(vlm, scale_rewards="std")
    with pytest.raises(ValueError, match="unknown reward"):
        _module(vlm, reward_weights={"accuracy": 1.0})
    with pytest.raises(ValueError, match="peft=lora"):
        GRPOModule(copy.deepcopy(vlm.model), vlm.processor, optimizer=torch.optim.AdamW, beta=0.1)


def test_sampling_never_emits_image_placeholders(tiny):
    """A sampled <|image_pad|> would be read as an image slot by the log-prob forward pass."""
    vlm = tiny("qwen2_vl")
    module = _module(vlm)
    pad = vlm.processor.image_token_id
    assert pad in module.sampling["suppress_tokens"]

    def favour_placeholder(_module, _inputs, logits):
        logits[..., pad] += 100.0
        return logits

    hook = module.model.get_output_embeddings().register_forward_hook(favour_placeholder)
    try:
        rollout = module.sample(VQACollator(vlm.processor)(_items()))
        assert not (rollout.completion_ids == pad).any()
        assert torch.isfinite(module.completion_logps(rollout)).all()
    finally:
        hook.remove()


@pytest.mark.parametrize(("top_p", "top_k"), [(1.0, 0), (0.9, 5)])
def test_completion_logps_equal_the_sampler_distribution(tiny, top_p, top_k):
    """The training forward pass (prompt + completion, left padding, images repeated per row) gives each
    sampled token the log-probability generate sampled it with: at the sampling temperature, without the
    suppressed image tokens and, when the sampler truncates (top_p < 1, top_k > 0), on the truncated and
    renormalised distribution (the scores generate sampled from), not the full one."""
    vlm = tiny("qwen2_vl")
    module = _module(vlm, temperature=0.7, top_p=top_p, top_k=top_k, max_completion_length=5)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a non-trivial adapter
        for name, p in module.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    module.model.eval()
    batch = VQACollator(vlm.processor)(_items(3))  # different prompt lengths need left padding
    batch["prompt_input_ids"][1, :2] = vlm.processor.tokenizer.pad_token_id
    batch["prompt_attention_mask"][1, :2] = 0
    rollout = module.sample(batch)
    with torch.no_grad():
        out = module.model.generate(**rollout.inputs, **module.sampling, max_new_tokens=5, output_scores=True,
                                    output_logits=True, return_dict_in_generate=True)  # fmt: skip
        ids = out.sequences[:, rollout.inputs["input_ids"].shape[1] :]
        rollout.completion_ids, rollout.mask = ids, completion_mask(ids, module.end_ids)
        scores = torch.stack(out.scores, dim=1).float()  # what generate sampled from, after its warpers
        sampled = scores.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        full = (torch.stack(out.logits, dim=1).float() / 0.7).log_softmax(-1).gather(-1, ids.unsqueeze(-1))
        trained = module.completion_logps(rollout)
    mask = rollout.mask.bool()
    assert torch.allclose(trained[mask], sampled[mask], atol=1e-4)
    if top_k:  # the truncated distribution is not the full one: the old log-probs were biased
        assert (trained[mask] - full.squeeze(-1)[mask]).abs().max() > 1e-3


def _fake_ranks(module, world_size=2, accumulate=1):
    """A Trainer stand-in for `world_size` ranks whose other ranks hold this rank's rollout again: the
    strategy's sum-reduce multiplies by world_size (what DDP's all-reduce of identical ranks gives)."""

    def reduce(tensor, reduce_op="mean"):
        assert reduce_op == "sum"
        return tensor * world_size

    module._trainer = SimpleNamespace(
        world_size=world_size,
        accumulate_grad_batches=accumulate,
        strategy=SimpleNamespace(reduce=reduce),
        global_step=0,
    )
    module.window_mean = lambda total, count: total / count
    module.log_step = lambda *args, **kwargs: None


def test_batch_scaling_uses_every_ranks_rewards(tiny):
    """scale_rewards=batch under 2 ranks: the std is that of both ranks' 12 rewards, not of this rank's 6."""
    vlm = tiny("qwen2_vl")
    module = _module(vlm, scale_rewards="batch")
    _fake_ranks(module)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])  # groups (1, 0, 0) and (1, 1, 0)
    module.score = lambda rollout: rewards.unsqueeze(1)
    from medvqa.losses import grpo as losses

    with mock.patch("medvqa.stages.grpo.grpo_loss", wraps=losses.grpo_loss) as loss:
        module.training_step(VQACollator(vlm.processor)(_items()), 0)
    advantages = loss.call_args.args[2]
    centred = torch.tensor([2, -1, -1, 1, 1, -2]) / 3
    both = torch.cat([rewards, rewards]).std()  # 0.5222, where this rank alone has 0.5477
    assert advantages.tolist() == pytest.approx((centred / (both + 1e-4)).tolist(), abs=1e-6)


def test_flat_groups_warn_once_per_stretch_naming_the_knob(tiny, caplog):
    """Every group flat for 12 optimizer steps (accumulation 2): one warning, after 10 steps' rollouts; none
    while the share is lower; a new stretch warns again."""
    module = _module(tiny("qwen2_vl"))
    _fake_ranks(module, world_size=1, accumulate=2)
    rollout = SimpleNamespace(stats={})
    flat, mixed = torch.ones(6), torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    with caplog.at_level("WARNING", logger="medvqa.stages.grpo"):
        for _ in range(19):
            module.batch_statistics(rollout, flat)
        assert not caplog.records  # 19 micro-batches: not yet 10 optimizer steps
        for _ in range(5):
            module.batch_statistics(rollout, flat)
        assert len(caplog.records) == 1 and "stage.dynamic_sampling=true" in caplog.records[0].getMessage()
        assert rollout.stats["frac_reward_zero_std"] == 1.0
        for _ in range(20):
            module.batch_statistics(rollout, mixed)
        assert len(caplog.records) == 1 and rollout.stats["frac_reward_zero_std"] == 0.0
        for _ in range(20):
            module.batch_statistics(rollout, flat)
    assert len(caplog.records) == 2
