"""Group relative policy optimisation with medical-VQA rewards (loss: medvqa/losses/grpo.py, rewards:
medvqa/rewards/). Optimisation is Lightning's own (automatic): the step returns the loss, Lightning runs
backward, gradient accumulation, clipping and the optimizer.

With `num_iterations` > 1 each rollout is optimised that many times (the policy ratio then moves away from
1 and clipping acts): the first optimizer step of a cycle samples fresh rollouts, one per micro-batch, and
the next `num_iterations - 1` optimizer steps replay them (their own dataloader batches go unused).

`scale_rewards=batch` divides by the std over every rank's rewards of this micro-batch step (TRL: over
the gathered generation batch). Rollouts are sampled one micro-batch at a time, so the later micro-batches
of an accumulation window do not exist yet when the first one's advantages are needed: "the batch" is one
micro-batch on all ranks, and a whole window as TRL has it is `data.batch_size` x 1 accumulation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medvqa.data.collate import token_tail
from medvqa.losses.dpo import token_logps
from medvqa.losses.grpo import group_advantages, grpo_loss, reward_sums, std_from_sums, zero_std_groups
from medvqa.models.peft import check_reference, reference_pass
from medvqa.rewards import WeightedRewards
from medvqa.rewards.tags import INSTRUCTION, answer_text
from medvqa.stages.base import VLMStage, prompt_inputs
from medvqa.stages.grpo_sampling import FlatGroupWatch, group_rows, sampling_logits, select_rows, splice

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = {"format": 0.5, "answer_match": 1.0, "plane_match": 0.25, "modality_match": 0.25,
                   "caption_alignment": 0.25}  # fmt: skip


@dataclass
class Rollout:
    """Sampled completions for P prompts x G generations (N = P * G rows, a prompt's rows adjacent)."""

    inputs: dict[str, Any]  # the prompts, each row repeated G times (ids, masks, image tensors)
    completion_ids: torch.Tensor  # (N, L) generated tokens, padding after the end token
    mask: torch.Tensor  # (N, L) 1 on generated tokens up to and including the end token
    texts: list[str]  # (N,) decoded completions
    fields: dict[str, list]  # sample fields per row (answer, plane, caption, ...), for the rewards
    truncated: torch.Tensor  # (N,) bool: no end token within max_completion_length
    rewards: torch.Tensor | None = None  # (N, K) raw rewards, NaN where one does not apply
    advantages: torch.Tensor | None = None  # (N,)
    old_logp: torch.Tensor | None = None  # (N, L) sampling-time log-probs (num_iterations > 1)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # sampling statistics, logged with the step


def repeat_rows(inputs: dict[str, Any], n: int) -> dict[str, Any]:
    """Repeat every prompt row (and its image) n times, copies adjacent. Qwen-VL processors flatten all
    images' patches into one `pixel_values` (sum of patches, D), split per image by `image_grid_thw`."""
    rows = inputs["input_ids"].shape[0]
    out = {}
    for key, value in inputs.items():
        if key == "pixel_values" and "image_grid_thw" in inputs and value.shape[0] != rows:
            per_image = value.split(inputs["image_grid_thw"].prod(-1).tolist())
            out[key] = torch.cat([chunk for chunk in per_image for _ in range(n)])
        elif torch.is_tensor(value) and value.shape[0] == rows:
            out[key] = value.repeat_interleave(n, dim=0)
        else:
            raise ValueError(f"cannot repeat model input {key!r} of shape {tuple(value.shape)} per prompt")
    return out


def completion_mask(ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """(N, L) -> (N, L) long: 1 up to and including the first end token of each row, 0 after it."""
    is_end = torch.isin(ids, torch.tensor(end_ids, device=ids.device))
    ends_before = is_end.long().cumsum(dim=1) - is_end.long()  # end tokens strictly before each position
    return (ends_before == 0).long()


class GRPOModule(VLMStage):
    """Batches are ordinary VQA batches (prompts + labels); `data.batch_size` prompts per micro-batch, each
    answered `num_generations` times. Knobs: docs/stages.md and conf/stage/grpo.yaml."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_generations: int = 4,
        temperature: float = 0.8,
        top_p: float = 1.0,
        top_k: int | None = 0,
        max_completion_length: int = 64,
        reward_weights: dict[str, float] | None = None,
        reward_options: dict[str, dict] | None = None,
        scale_rewards: str = "group",
        beta: float = 0.0,
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.2,
        loss_type: str = "dapo",
        num_iterations: int = 1,
        dynamic_sampling: bool = False,
        max_resample_rounds: int = 3,
        log_completions_every_n_steps: int = 50,
        reference: str = "init",
        **kwargs,  # VLMStage's: scheduler, max_new_tokens, param_groups, gradient_checkpointing, lr
    ):
        super().__init__(model, processor, optimizer, **kwargs)
        if num_generations < 2:
            raise ValueError(f"stage.num_generations={num_generations}: GRPO compares completions, use >= 2")
        if beta and not hasattr(model, "disable_adapter"):
            raise ValueError(f"stage.beta={beta} needs the adapter-off model as reference: use peft=lora (or "
                             "dora), or stage.beta=0 to train without a KL term")  # fmt: skip
        self.num_generations, self.max_completion_length = num_generations, max_completion_length
        self.sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        self.rewards = WeightedRewards(reward_weights or DEFAULT_WEIGHTS, reward_options)
        self.scale_rewards, self.beta, self.loss_type = scale_rewards, beta, loss_type
        self.epsilon_low, self.epsilon_high, self.num_iterations = epsilon_low, epsilon_high, num_iterations
        self.dynamic_sampling, self.max_resample_rounds = dynamic_sampling, max_resample_rounds
        self.log_completions_every_n_steps = log_completions_every_n_steps
        self.flat_watch: FlatGroupWatch | None = None  # built on first use: its window counts micro-batches
        self.reference = check_reference(reference)
        # bad settings fail here, not after the first rollout
        group_advantages(torch.zeros(num_generations), num_generations, scale_rewards)
        self.end_ids = _end_ids(model, processor)
        # a sampled image placeholder would be read as an image slot in the log-prob forward pass
        self.sampling["suppress_tokens"] = _placeholder_ids(model)
        self._replay: dict[tuple, Rollout] = {}
        self._slot, self._replay_key = 0, (0, None)

    def setup(self, stage: str) -> None:
        """The prompt asks for the structured reply only when the format reward is on."""
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            datamodule.instruction = INSTRUCTION if "format" in self.rewards else None

    parse_answer = staticmethod(answer_text)

    @classmethod
    def prompt_instruction(cls, stage_cfg: Mapping[str, Any]) -> str | None:
        """The answer-format request when the `format` reward is on (as `setup` sets it for the data)."""
        weights = stage_cfg.get("reward_weights") or DEFAULT_WEIGHTS
        return INSTRUCTION if weights.get("format") else None

    # -- the algorithm -------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        rollout = self.replayed_rollout(batch_idx, batch["meta"].get("batch_row"))
        if rollout is None and self.empty_step(batch):  # every image unreadable: nothing to sample from
            self._replay.pop(self._replay_key, None)
            return None
        if rollout is None:
            rollout = self.sample(batch)  # G completions per prompt, one batched generate call
            rollout.rewards = self.score(rollout)  # (N, K) each reward
            if self.dynamic_sampling:  # DAPO: prompts whose completions all scored the same are drawn again
                rollout = self.resample_flat_groups(rollout)
            total = self.rewards.total(rollout.rewards)  # (N,) weighted sum
            std = self.batch_statistics(rollout, total)  # of every rank's rewards, for scale_rewards=batch
            advantages = group_advantages(total, self.num_generations, self.scale_rewards, batch_std=std)
            rollout.advantages = advantages.to(self.device)  # (N,)
            if self.num_iterations > 1:  # later iterations compare with the sampling-time policy
                rollout.old_logp = self.old_logps(rollout)
            self.remember(rollout)
        logp = self.policy_logps(rollout)  # (N, L), with gradient
        old_logp = rollout.old_logp if rollout.old_logp is not None else logp.detach()
        ref_logp = self.reference_logps(rollout) if self.beta else None  # beta = 0: no reference pass
        total, count, stats = grpo_loss(logp, old_logp, rollout.advantages, rollout.mask, ref_logp, self.beta,
                                        self.epsilon_low, self.epsilon_high, self.loss_type,
                                        self.max_completion_length)  # fmt: skip
        self.log_step(rollout, total / count, stats)
        # Lightning runs backward, accumulation, clipping and the optimizer; the loss_type's normaliser
        # spans the whole accumulation window (VLMStage.window_mean)
        return self.window_mean(total, count)

    # -- the pieces ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> Rollout:
        """Sample num_generations completions per prompt in one batched `generate` (KV cache on), dropout off."""
        inputs = repeat_rows(prompt_inputs(batch), self.num_generations)
        fields = {
            k: [v for v in values for _ in range(self.num_generations)] for k, values in batch["meta"].items()
        }
        return self.rollout_from(inputs, fields)

    @torch.no_grad()
    def rollout_from(self, inputs: dict[str, Any], fields: dict[str, list]) -> Rollout:
        """One completion per row of `inputs` (prompts already repeated), sampled in one `generate` call."""
        was_training = self.model.training
        self.model.eval()
        out = self.model.generate(**inputs, **self.sampling, max_new_tokens=self.max_completion_length,
                                  repetition_penalty=1.0, use_cache=True)  # fmt: skip
        self.model.train(was_training)
        ids = out[:, inputs["input_ids"].shape[1] :]
        mask = completion_mask(ids, self.end_ids)
        texts = self.processor.tokenizer.batch_decode(
            ids.masked_fill(mask == 0, self.pad_id), skip_special_tokens=True
        )
        truncated = ~torch.isin(ids, torch.tensor(self.end_ids, device=ids.device)).any(dim=1)
        return Rollout(inputs, ids, mask, [t.strip() for t in texts], fields, truncated)

    def score(self, rollout: Rollout) -> torch.Tensor:
        return self.rewards.score(rollout.texts, rollout.fields)

    @torch.no_grad()
    def resample_flat_groups(self, rollout: Rollout) -> Rollout:
        """DAPO's dynamic sampling: the prompts whose group scored all the same are sampled again, up to
        `max_resample_rounds` times, until their group's rewards differ; groups still flat after that are
        kept (advantage 0) and counted. Rounds are decided per rank (no collective inside the loop)."""
        first = zero_std_groups(self.rewards.total(rollout.rewards), self.num_generations)
        for _ in range(self.max_resample_rounds):
            flat = zero_std_groups(self.rewards.total(rollout.rewards), self.num_generations)
            if not flat.any():
                break
            rows = group_rows(flat, self.num_generations)
            fresh = self.rollout_from(select_rows(rollout.inputs, rows),
                                      {k: [v[i] for i in rows.tolist()] for k, v in rollout.fields.items()})  # fmt: skip
            fresh.rewards = self.score(fresh)
            rollout.completion_ids = splice(rollout.completion_ids, rows, fresh.completion_ids, self.pad_id)
            rollout.mask = splice(rollout.mask, rows, fresh.mask, 0)
            rollout.truncated = splice(rollout.truncated, rows, fresh.truncated, 0)
            rollout.rewards = splice(rollout.rewards, rows, fresh.rewards, 0)
            for i, text in zip(rows.tolist(), fresh.texts, strict=True):
                rollout.texts[i] = text
        rollout.stats["frac_reward_zero_std_sampled"] = first.float().mean()  # before resampling
        return rollout

    def batch_statistics(self, rollout: Rollout, total: torch.Tensor) -> torch.Tensor:
        """The std of every rank's rewards (for scale_rewards=batch) and, into `rollout.stats`, the share of
        flat groups over all ranks, from one all-reduce of 5 numbers; warns when that share stays high."""
        flat = zero_std_groups(total, self.num_generations)
        sums = torch.cat([reward_sums(total), torch.tensor([flat.sum(), flat.numel()], dtype=torch.float64)])
        if self._trainer is not None and self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
        frac = float(sums[3] / sums[4])
        rollout.stats["frac_reward_zero_std"] = torch.tensor(frac)
        if self.dynamic_sampling:
            rollout.stats["flat_groups_kept"] = sums[3].float()
        self.warn_if_flat(frac)
        return std_from_sums(sums[:3])

    def warn_if_flat(self, frac: float) -> None:
        """A warning (once per stretch) when most groups have been flat over the last 10 optimizer steps."""
        if self.flat_watch is None:
            accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
            self.flat_watch = FlatGroupWatch(threshold=0.9, window=10 * accumulate)
        mean = self.flat_watch.update(frac)
        if mean is not None:
            log.warning(
                "train/frac_reward_zero_std averaged %.2f over the last 10 steps: most prompts' completions "
                "all score the same, so their advantages are 0 and the loss gives almost no gradient. Resample "
                "them with stage.dynamic_sampling=true (up to stage.max_resample_rounds), or make groups differ: "
                "higher stage.temperature or stage.num_generations, a graded reward (e.g. "
                "stage.reward_weights.format), or data the policy neither always gets right nor always wrong",
                mean,
            )

    def policy_logps(self, rollout: Rollout) -> torch.Tensor:
        return self.completion_logps(rollout)

    @torch.no_grad()
    def old_logps(self, rollout: Rollout) -> torch.Tensor:
        """The sampling-time policy's log-probs, kept while a rollout is optimised num_iterations times."""
        return self.completion_logps(rollout)

    @torch.no_grad()
    def reference_logps(self, rollout: Rollout) -> torch.Tensor:
        """The reference (stage.reference: the starting policy or the base; see models/peft.py:reference_pass)."""
        with reference_pass(self.model, self.reference):
            return self.completion_logps(rollout)

    def completion_logps(self, rollout: Rollout) -> torch.Tensor:
        """(N, L) log-probs of the completion tokens given image + prompt under the distribution they were
        sampled from (temperature, suppressed tokens, top_k / top_p: `sampling_logits`); logits are computed
        only for the completion positions (`logits_to_keep`)."""
        ids, mask, inputs = rollout.completion_ids, rollout.mask, dict(rollout.inputs)
        prompt_shape = inputs["input_ids"].shape
        # per-token inputs grow by the completion: ids, attention mask, token types (filled as the collator does)
        for key in [k for k, v in inputs.items() if torch.is_tensor(v) and v.shape == prompt_shape]:
            fill = mask if key == "attention_mask" else token_tail(key, ids)
            inputs[key] = torch.cat([inputs[key], fill], dim=1)
        length = ids.shape[1]
        logits = self.model(**inputs, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        return token_logps(sampling_logits(logits, self.sampling), ids)

    # -- rollout reuse for num_iterations > 1 ----------------------------------------------------------
    def replayed_rollout(self, batch_idx: int, rows: list[int] | None = None) -> Rollout | None:
        """The stored rollout for this micro-batch when this optimizer step replays an earlier cycle's rollouts.
        Keyed by the micro-batch's place in the accumulation window (from the optimizer step and batch_idx,
        not a count of calls: the OOM guard runs one loader batch as several chunks, and retries) and by the
        loader-batch rows the chunk holds (meta["batch_row"], set by the guard), so each chunk replays its own."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        step = self.trainer.global_step if self._trainer is not None else 0
        self._slot = batch_idx % accumulate
        self._replay_key = (self._slot, tuple(rows) if rows is not None else None)
        return self._replay.get(self._replay_key) if step % self.num_iterations else None

    def remember(self, rollout: Rollout) -> None:
        if self.num_iterations > 1:
            self._replay[self._replay_key] = rollout

    # -- logging -------------------------------------------------------------------------------------
    def log_step(self, rollout: Rollout, loss: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        total = self.rewards.total(rollout.rewards)
        lengths = rollout.mask.sum(dim=1).float()
        values = {
            "train/loss": loss.detach(),
            "train/reward": total.mean(),  # the weighted total
            "train/reward_std": total.std(),
            "train/advantage_std": rollout.advantages.std(),
            "train/completion_length": lengths.mean(),
            "train/completion_length_max": lengths.max(),
            "train/truncated_fraction": rollout.truncated.float().mean(),
        }
        for k, name in enumerate(self.rewards.names):
            column = rollout.rewards[:, k]
            if not column.isnan().all():
                values[f"train/reward_{name}"] = column.nanmean()
        values |= {f"train/{k}": v for k, v in (rollout.stats | stats).items()}
        self.log_dict(values, batch_size=len(rollout.texts) // self.num_generations)
        every = self.log_completions_every_n_steps
        if every and self.global_step % every == 0 and self._slot == 0:  # once per optimizer step
            self.write_completions(rollout, total)

    def write_completions(self, rollout: Rollout, total: torch.Tensor, rows: int = 8) -> None:
        """A small table of sampled completions: appended to <run dir>/completions.jsonl (kept local: it
        holds questions about patient images), and sent to loggers only with their `log_samples=true`."""
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        table = [
            {"step": self.global_step, "question": rollout.fields["question"][i], "answer": rollout.fields["answer"][i],
             "completion": rollout.texts[i], "reward": round(float(total[i]), 4),
             **{n: round(float(rollout.rewards[i, k]), 4) for k, n in enumerate(self.rewards.names)}}
            for i in range(min(rows, len(rollout.texts)))
        ]  # fmt: skip
        path = Path(self.trainer.default_root_dir) / "completions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in table)
        for logger in self.loggers:
            if getattr(logger, "log_samples", False) and hasattr(logger, "log_table"):
                logger.log_table(
                    "train/completions", columns=list(table[0]), data=[list(r.values()) for r in table]
                )

    @property
    def pad_id(self) -> int:
        return self.processor.tokenizer.pad_token_id


def _placeholder_ids(model) -> list[int]:
    """Image/video placeholder and vision-boundary token ids of the model's config (Qwen-VL, PaliGemma)."""
    config = getattr(model, "config", None)
    names = (
        "image_token_id",
        "image_token_index",
        "video_token_id",
        "vision_start_token_id",
        "vision_end_token_id",
    )
    return sorted({getattr(config, n) for n in names if isinstance(getattr(config, n, None), int)})


def _end_ids(model, processor) -> list[int]:
    """Tokens that end a completion: the tokenizer's end token and the model's generation eos ids."""
    ids = {processor.tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)
