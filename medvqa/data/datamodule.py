"""MedVQADataModule: read a release into records, split without leaks, decode one image per item lazily."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from medvqa.data.collate import VQACollator
from medvqa.data.errors import BadSamples, DataError, OnBad, resolve_inside
from medvqa.data.filters import select, spread
from medvqa.data.images import open_image
from medvqa.data.pixels import DicomFrame, check_frame
from medvqa.data.sample import VQASample
from medvqa.data.sampling import TrainSampler, source_weights, text_lengths
from medvqa.data.split import make_splits, shared_groups

log = logging.getLogger(__name__)
Reader = Callable[..., list[VQASample]]
# what evaluation loaders show (visual reliance, medvqa/eval/visual.py): the images, mid-grey ones, another
# patient's, or none at all (the prompt without image tokens)
IMAGE_MODES = ("real", "blank", "swapped", "none")


class VQADataset(Dataset):
    """Holds records only; `__getitem__` opens, shrinks and (train only) augments one image."""

    def __init__(
        self, samples, max_side=1024, on_bad_sample: OnBad = "error", blank=False, transform=None, window=None,
        shown=None, frame: DicomFrame = "middle",
    ):  # fmt: skip
        """`shown`: the records whose pictures the items show (item i shows `shown[i]`'s image; default:
        its own). Visual reliance swaps them between patients (medvqa/eval/visual.py). `frame`: the frame of
        a multi-frame DICOM to decode (data.dicom_frame)."""
        self.samples, self.max_side, self.on_bad_sample = samples, max_side, on_bad_sample
        self.blank, self.transform, self.window = blank, transform, window
        self.shown, self.frame = shown, frame

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.samples[i]
        try:
            image = open_image(
                self.shown[i] if self.shown else sample, self.max_side, self.window, self.frame
            )
        except DataError:
            if self.on_bad_sample == "error":
                raise
            return {"sample": sample, "image": None}  # the collator drops it and counts it
        if self.blank:  # ablation: the same geometry with no content, to prove answers come from pixels
            image = Image.new("RGB", image.size, (128, 128, 128))
        if self.transform is not None:
            image = self.transform(image, sample)
        return {"sample": sample, "image": image}


class MedVQADataModule(L.LightningDataModule):
    def __init__(
        self,
        reader: Reader,
        root: str,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_by: str = "official",
        seed: int = 0,
        on_bad_sample: OnBad = "error",
        filters: dict | list[dict] | None = None,  # a list: samples matching any of them
        filter_splits: tuple[str, ...] | list[str] = ("train", "val"),  # the splits data.filters apply to
        max_image_side: int = 1024,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        system_prompt: str | None = None,
        prompt_template: str = "{question}",
        max_answer_tokens: int = 256,
        # pre-flight (medvqa/callbacks/preflight.py): the longest training sequence
        max_length: int | None = None,
        blank_images: bool = False,
        limit: dict[str, int] | None = None,
        window: list[float] | None = None,
        dicom_frame: DicomFrame = "middle",
        augment: Callable | None = None,
        group_by_length: bool = False,
        group_by_image: bool = False,
        sampling_weights: dict[str, float] | None = None,
        processor: Any = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["reader", "processor", "augment"])
        self.reader, self.root, self.processor = reader, Path(root), processor
        self.augment = augment  # train split only (see dataset())
        self.batch_size = batch_size  # BatchSizeFinder tunes this attribute
        self.eval_batch_size = eval_batch_size
        self.bad = BadSamples(on_bad_sample)
        check_frame(dicom_frame)  # a wrong data.dicom_frame is the config's mistake, not each image's
        self.splits: dict[str, list[VQASample]] = {}
        # set by stages: an instruction appended to every question (GRPO's answer format), and a
        # medvqa.data.preference.PreferenceSet that turns the training split into (chosen, rejected) pairs (DPO)
        self.instruction: str | None = None
        self.pairs = None
        # set by evaluation (medvqa/eval/evaluation.py): the split test_dataloader serves, and what the
        # evaluation splits show: real | blank | swapped (visual reliance, medvqa/eval/visual.py)
        self.test_split = "test"
        self.image_mode = "real"
        self.swap_seed = 0

    # -- records -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        samples = self._checked(self.reader(self.root, self.bad))
        splits = make_splits(samples, hp.val_fraction, hp.test_fraction, hp.seed, hp.split_by)
        for (a, b), groups in shared_groups(splits).items():
            log.warning("the release's %s and %s splits share %d patients/images (as shipped); "
                        "set data.split_by=group to re-split without overlap", a, b, len(groups))  # fmt: skip
        self._filter(splits)
        for name, n in (hp.limit or {}).items():
            splits[name] = spread(splits[name], n, hp.seed)  # over patients, not the release's first rows
        self.splits = splits
        log.info("data %s: %s", self.root, {k: len(v) for k, v in splits.items()})
        if self.bad.total:
            log.warning("skipped %d bad samples while reading: %s", self.bad.total, dict(self.bad.skipped))

    def _filter(self, splits: dict[str, list[VQASample]]) -> None:
        """data.filters on the splits named by data.filter_splits (train and val by default: a pipeline's
        stages then test on the same whole test split), with one line saying what each split kept."""
        hp = self.hparams
        unknown = sorted(set(hp.filter_splits) - set(splits))
        if unknown:
            raise DataError(f"data.filter_splits: unknown split(s) {unknown}; choose from {sorted(splits)}")
        kept = []
        for name in splits if hp.filters else ():
            before = len(splits[name])
            if name not in hp.filter_splits:
                kept.append(f"{name} {before} (not filtered)")
                continue
            splits[name] = select(splits[name], hp.filters)
            kept.append(f"{name} {len(splits[name])} of {before}")
        if kept:
            log.info("data.filters=%s on %s kept: %s", hp.filters, list(hp.filter_splits), ", ".join(kept))
        if splits["train"]:
            return
        if kept and "train" in hp.filter_splits:
            raise DataError(f"data.root={self.root}: data.filters={hp.filters} kept no training question "
                            f"({kept[0]}); widen the filters")  # fmt: skip
        raise DataError(f"data.root={self.root}: the release has no training questions; check data.root")

    def _checked(self, samples: list[VQASample]) -> list[VQASample]:
        """Empty questions/answers, paths escaping data.root and missing files: error or skip-and-count.
        When no row has its image, one error says so (how many, why, an example) in either mode: data.root
        then points at the wrong folder, which is no row's fault."""
        good, failed = [], []
        checked: dict[str, str | tuple[str, str]] = {}  # one check per file, however many rows share it
        for s in samples:
            where = s.origin or s.id
            if not s.question:
                self.bad.report(where, "empty question", "Fix or remove the row.")
                continue
            if not s.answer:
                self.bad.report(where, "empty answer", "Fix or remove the row.")
                continue
            if s.image not in checked:
                checked[s.image] = self._check_path(s.image)
            result = checked[s.image]
            if isinstance(result, tuple):
                failed.append((where, s.image, *result))
                continue
            s.image = result  # the same str object for every row of one file
            good.append(s)
        if failed and not good:
            reasons = Counter(reason for _, _, reason, _ in failed)
            why = (
                next(iter(reasons))
                if len(reasons) == 1
                else ", ".join(f"{n} {r}" for r, n in reasons.items())
            )
            raise DataError(f"data.root={self.root}: {len(failed)} of {len(samples)} rows skipped: {why}, e.g. "
                            f"{failed[0][1]}; point data.root at the folder the release's image paths start "
                            "from")  # fmt: skip
        for where, _, reason, fix in failed:
            self.bad.report(where, reason, fix)
        return good

    def _check_path(self, image: str) -> str | tuple[str, str]:
        """The resolved path, or (reason, fix) when it escapes data.root or is not a file."""
        try:
            path = resolve_inside(self.root, image)
        except DataError as e:
            return "image path escapes data.root", str(e)
        if not path.is_file():
            return "image file not found", f"Expected {path}."
        return str(path)

    # -- loaders -------------------------------------------------------------------------------------
    def collator(self, image_free: bool = False) -> VQACollator:
        if self.processor is None:
            raise RuntimeError(
                "MedVQADataModule needs the model's processor: pass processor=... (or set .processor) before the loaders"
            )
        return VQACollator.from_config(self.processor, self.hparams, self.instruction, image_free)

    def dataset(self, split: str, evaluating: bool = False) -> VQADataset:
        """The split's records; only the train split is augmented, and only for training. `image_mode`
        applies to evaluation loaders only."""
        hp = self.hparams
        samples = self.splits[split]
        transform = self.augment if split == "train" and not evaluating else None
        mode = self.image_mode if evaluating else "real"
        if mode not in IMAGE_MODES:
            raise ValueError(f"image_mode={mode!r}: choose one of {IMAGE_MODES}")
        shown = None
        if mode == "swapped":
            from medvqa.eval.visual import derangement

            shown = [samples[j] for j in derangement([s.group for s in samples], self.swap_seed)]
        blank = hp.blank_images or mode == "blank"
        return VQADataset(samples, hp.max_image_side, hp.on_bad_sample, blank, transform, hp.window, shown,
                          hp.dicom_frame)  # fmt: skip

    def train_sampler(self) -> TrainSampler | None:
        """Mixture weights and/or length (or image) grouping for the train split; None means a plain seeded
        shuffle."""
        hp, train = self.hparams, self.splits["train"]
        by_image = hp.get("group_by_image", False)
        if not hp.group_by_length and not hp.sampling_weights and not by_image:
            return None
        weights = source_weights(train, hp.sampling_weights) if hp.sampling_weights else None
        lengths = text_lengths(train, self.collator().tokenizer) if hp.group_by_length else None
        images = [s.image_key for s in train] if by_image else None
        return TrainSampler(len(train), self.batch_size, weights, lengths, hp.seed, images)

    def eval_sampler(self, dataset: Dataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP, val/test split across ranks without the padding Lightning's DistributedSampler adds
        (it repeats questions to even out the shards): every question is scored exactly once."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        return UnrepeatedDistributedSampler(
            dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        hp = self.hparams
        dataset = self.dataset(split, evaluating=not shuffle)
        sampler = self.train_sampler() if shuffle else self.eval_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=hp.num_workers,
            collate_fn=self.collator(image_free=not shuffle and self.image_mode == "none"),
            persistent_workers=hp.num_workers > 0,
            generator=torch.Generator().manual_seed(hp.seed) if shuffle and sampler is None else None,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # `meta` is lists of strings: walking it with Lightning's generic collection mapper was ~2% of a
        # tiny model's step, for nothing to move. Everything else goes through Lightning's mover.
        if not (isinstance(batch, dict) and "meta" in batch):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        tensors = {k: v for k, v in batch.items() if k != "meta"}
        return super().transfer_batch_to_device(tensors, device, dataloader_idx) | {"meta": batch["meta"]}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training images found unreadable while loading (on_bad_sample=skip) join the reading counts (every
        time one is read: each epoch). Evaluation counts its own, once per pass (the stages' `{split}/skipped`),
        as val and test run several times (untrained, each validation, the chosen weights)."""
        if isinstance(batch, dict) and batch.get("n_skipped") and self.trainer.training:
            self.bad.skipped["unreadable image (train)"] += int(batch["n_skipped"])
        return batch

    def skipped_summary(self) -> str:
        """One line for the end of a run: what was skipped and why, or '' when nothing was."""
        if not self.bad.total:
            return ""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.bad.skipped.most_common())
        # under on_bad_sample=error only the release's known quirks are ever skipped
        mode = " (data.on_bad_sample=skip)" if self.bad.mode == "skip" else ""
        return f"skipped {self.bad.total} bad samples{mode}: {reasons}"

    def train_dataloader(self) -> DataLoader:
        if self.pairs is not None:
            return self.pairs.loader(self)
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size or self.batch_size)

    def test_dataloader(self) -> DataLoader:
        """The `test_split` (test unless an evaluation of another split set it), never shuffled or augmented."""
        return self._loader(self.test_split, False, self.eval_batch_size or self.batch_size)
