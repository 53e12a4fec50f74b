"""Direct preference optimisation on (image, question, chosen, rejected) pairs (loss: medvqa/losses/dpo.py).

The reference is the starting policy (`stage.reference=init`, as in standard DPO and TRL): starting from an
earlier stage's adapter (`stage.init_adapter`) a frozen second copy of that adapter (medvqa/models/peft.py:
reference_pass), else the model with its adapter switched off, which a fresh adapter equals. No second copy
of the base weights exists. `stage.reference=base` takes the adapter-off model even from an init_adapter.
Pairs come from the datamodule (medvqa/data/preference.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader

from medvqa.data.collate import IGNORE_INDEX, is_empty
from medvqa.data.datamodule import VQADataset
from medvqa.data.preference import PreferenceSet
from medvqa.data.sample import VQASample
from medvqa.losses.dpo import dpo_loss, sequence_logps, sequence_tokens
from medvqa.models.peft import check_reference, reference_pass
from medvqa.stages.base import VLMStage, model_inputs


def answer_logps(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """(R,) log p(answer | image, prompt) summed over the answer tokens (labels != -100) of each row.

    Only the logits from the first answer position on are computed (`logits_to_keep`): the prompt and image
    tokens before it need hidden states but no vocabulary projection."""
    labels = inputs["labels"]
    supervised = labels != IGNORE_INDEX
    first = int(supervised.float().argmax(dim=1).min()) if supervised.any() else labels.shape[1] - 1
    keep = labels.shape[1] - first + 1  # position first - 1 predicts the first answer token
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**forward, logits_to_keep=keep, use_cache=False).logits
    return sequence_logps(logits, labels[:, -keep:])


class DPOModule(VLMStage):
    """Batches hold 2B rows (chosen then rejected, see data/preference.py:PairCollator)."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        sources: list[str] | tuple[str, ...] = ("mined",),
        pairs_file: str | None = None,
        on_policy_limit: int | None = 512,
        seed: int = 0,
        reference: str = "init",
        **kwargs,  # VLMStage's: scheduler, max_new_tokens, param_groups, gradient_checkpointing, lr
    ):
        super().__init__(model, processor, optimizer, **kwargs)
        if not hasattr(model, "disable_adapter"):
            raise ValueError("stage=dpo takes its reference from the model with the adapter switched off, so it "
                             "needs an adapter: use peft=lora (or dora), not peft=none")  # fmt: skip
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.reference = check_reference(reference)
        # a bad loss_type / beta fails here, not at the first step
        dpo_loss(
            *torch.zeros(4, 1), beta, loss_type, chosen_tokens=torch.ones(1), rejected_tokens=torch.ones(1)
        )
        self.preference = PreferenceSet(sources, pairs_file, on_policy_limit, seed)
        self.preference.answer_fn = self.answer_samples

    def setup(self, stage: str) -> None:
        """Hand the pair builder to the datamodule: its training loader then yields preference pairs."""
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None:
            datamodule.pairs = self.preference

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if "on_policy" in self.preference.sources and self.trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("stage.sources includes on_policy: set trainer.reload_dataloaders_every_n_epochs=1 so "
                             "the model's answers are regenerated every epoch")  # fmt: skip

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.empty_step(batch):
            return None
        inputs, n = model_inputs(batch), len(batch["meta"]["id"])
        policy = answer_logps(self.model, inputs)  # (2B,): chosen rows, then rejected rows
        reference = self.reference_logps(inputs)
        tokens = sequence_tokens(inputs["labels"])  # (2B,) answer tokens: ipo averages each side over them
        losses, chosen, rejected = dpo_loss(policy[:n], policy[n:], reference[:n], reference[n:], self.beta,
                                            self.loss_type, self.label_smoothing, tokens[:n], tokens[n:])  # fmt: skip
        self.log_dict({
            "train/loss": losses.mean(),
            "train/reward_margin": (chosen - rejected).mean(),
            "train/reward_acc": (chosen > rejected).float().mean(),
            "train/reward_chosen": chosen.mean(),
            "train/reward_rejected": rejected.mean(),
            "train/logps_chosen": policy[:n].detach().mean(),
            "train/logps_rejected": policy[n:].detach().mean(),
        }, batch_size=n)  # fmt: skip
        self.log_skipped(batch)
        return self.window_mean(losses.sum(), losses.new_tensor(float(n)))  # mean over the window's pairs

    @torch.no_grad()
    def reference_logps(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Summed answer log-probs under the reference (stage.reference; see models/peft.py:reference_pass)."""
        with reference_pass(self.model, self.reference):
            return answer_logps(self.model, inputs)

    def on_train_epoch_start(self) -> None:
        for source, count in self.preference.counts.items():
            self.log(f"train/pairs_{source}", float(count), on_step=False, on_epoch=True)

    # -- on-policy pairs -----------------------------------------------------------------------------
    @torch.no_grad()
    def answer_samples(self, samples: list[VQASample]) -> list[str]:
        """The current model's greedy answers to `samples` (unreadable images answer ""), in order."""
        dm = self.trainer.datamodule
        hp = dm.hparams
        dataset = VQADataset(samples, hp.max_image_side, "skip", hp.blank_images, None, hp.window)
        loader = DataLoader(dataset, batch_size=dm.eval_batch_size or dm.batch_size, collate_fn=dm.collator())
        was_training, answers = self.model.training, {}
        self.model.eval()
        for batch in loader:
            if is_empty(batch):  # every image unreadable: those samples answer ""
                continue
            batch = move_data_to_device(batch, self.device)
            preds = [self.answer_from(c) for c in self.generate_answers(batch)]
            answers.update(zip(batch["meta"]["id"], preds, strict=True))
        self.model.train(was_training)
        return [answers.get(s.id, "") for s in samples]
