"""Padding share of train batches with and without `data.group_by_length`.

    python -m medvqa.bench data_padding [batch_size=8] [epochs=5] [limit=2000] [root=DIR data=NAME]

Each sample's true sequence length comes from the real collator (chat template, image tokens, answer,
end token) run on that sample alone, which is what it occupies in any right-padded batch. The share is
then pad tokens / all tokens over `epochs` seeded epochs, for the plain shuffled order and for the
order the length-grouped sampler gives (it groups by question + answer token counts, a proxy that needs
no image), plus the best grouping possible (by the true lengths), for scale.

Without `root`, the data is a generated mixture in the release formats (VQA-RAD, SLAKE, MedPix with
captions of 4-27 words, PMC-VQA with its choices, Kvasir-VQA), read with the tiny Qwen2-VL processor.
With `root` and `data` (a conf/data name), it measures that dataset as configured.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from medvqa.data import fixtures
from medvqa.data.datamodule import MedVQADataModule
from medvqa.data.formats import kvasir_vqa, medpix, mix, pmc_vqa, slake, vqa_rad
from medvqa.data.sampling import TrainSampler, padding_share, text_lengths
from medvqa.models.tiny import build_tiny

CONF = Path(__file__).resolve().parents[2] / "conf"


def _fixture_mixture(root: Path):
    fixtures.write("vqa_rad", root / "vqa_rad", n_images=40)
    fixtures.write("slake", root / "slake")
    fixtures.write("medpix", root / "medpix")
    fixtures.write("pmc_vqa", root / "pmc_vqa", n_figures=40)
    fixtures.write("kvasir_vqa", root / "kvasir_vqa", n_images=20)
    sources = {"vqa_rad": vqa_rad.read, "slake": slake.read, "medpix": medpix.read, "pmc_vqa": pmc_vqa.read,
               "kvasir_vqa": kvasir_vqa.read}  # fmt: skip
    return lambda r, bad: mix.read(r, bad, {k: {"reader": v} for k, v in sources.items()})


def _datamodule(root: str | None, data: str | None, processor, batch_size: int) -> MedVQADataModule:
    if root is None:
        folder = Path(tempfile.mkdtemp(prefix="medvqa-padding-"))
        return MedVQADataModule(
            _fixture_mixture(folder), str(folder), batch_size=batch_size, processor=processor
        )
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [f"data={data or 'vqa_rad'}", f"data.root={root}", f"data.batch_size={batch_size}"]
    with initialize_config_dir(
        config_dir=str(CONF), version_base="1.3"
    ):  # as `python -m medvqa.run` composes
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.data, processor=processor)


def run(
    batch_size: int = 8, epochs: int = 5, limit: int = 2000, root: str | None = None, data: str | None = None
):
    batch_size, epochs, limit = int(batch_size), int(epochs), int(limit)
    processor = build_tiny("qwen2_vl", hidden_size=32, num_layers=1, vision_depth=1, image_size=112).processor
    dm = _datamodule(root, data, processor, batch_size)
    dm.setup()
    train = dm.splits["train"]
    train = random.Random(0).sample(train, min(limit, len(train)))
    dataset, collate = dm.dataset("val"), dm.collator()  # un-augmented items
    dataset.samples = train
    true = [int(collate([dataset[i]])["input_ids"].shape[1]) for i in range(len(train))]
    proxy = text_lengths(train, collate.tokenizer)
    shares = {"plain_shuffle": 0.0, "group_by_length": 0.0, "grouped_by_true_length": 0.0}
    for epoch in range(epochs):
        orders = {
            "plain_shuffle": TrainSampler(len(train), batch_size, seed=epoch),
            "group_by_length": TrainSampler(len(train), batch_size, lengths=proxy, seed=epoch),
            "grouped_by_true_length": TrainSampler(len(train), batch_size, lengths=true, seed=epoch),
        }
        for name, sampler in orders.items():
            shares[name] += padding_share(true, list(sampler), batch_size) / epochs
    return {
        "data": data or "generated mixture (vqa_rad, slake, medpix, pmc_vqa, kvasir_vqa fixtures)",
        "samples": len(train),
        "batch_size": batch_size,
        "epochs": epochs,
        "sequence_length": {"min": min(true), "mean": round(sum(true) / len(true), 1), "max": max(true)},
        "padding_share": {k: round(v, 4) for k, v in shares.items()},
        "padding_cut": round(1 - shares["group_by_length"] / shares["plain_shuffle"], 4),
    }
