"""Mixture weights and length-grouped batches for the train split."""

from collections import Counter

import pytest
import torch

from medvqa.data.errors import DataError
from medvqa.data.sample import VQASample
from medvqa.data.sampling import TrainSampler, padding_share, source_weights, text_lengths


def _samples(sources: dict[str, int]) -> list[VQASample]:
    return [VQASample(id=f"{src}{i}", image="x", question="q", answer="a", source=src)
            for src, n in sources.items() for i in range(n)]  # fmt: skip


def test_padding_share_by_hand():
    # batches [2, 4] and [3, 3]: padded 8 + 6 = 14 tokens, real 12, so 2 / 14 are padding
    assert padding_share([2, 4, 3, 3], [0, 1, 2, 3], 2) == pytest.approx(2 / 14)
    # [1, 5] twice: padded 10 + 10, real 12 -> 8 / 20; grouped [1, 1] and [5, 5]: no padding at all
    assert padding_share([1, 5, 1, 5], [0, 1, 2, 3], 2) == pytest.approx(0.4)
    assert padding_share([1, 5, 1, 5], [0, 2, 1, 3], 2) == 0.0
    assert padding_share([5], [0], 8) == 0.0


def test_source_weights_by_hand_and_draw_frequencies():
    samples = _samples({"a": 3, "b": 1})
    weights = source_weights(samples, {"a": 1.0, "b": 3.0})
    assert weights == pytest.approx([1 / 3, 1 / 3, 1 / 3, 3.0])  # w_s / n_s: P(b) = 3 / (1 + 3)
    sampler = TrainSampler(len(samples), batch_size=2, weights=weights, seed=0)
    drawn = [i for _ in range(1000) for i in sampler]  # 1000 epochs of 4 draws
    share_b = Counter(samples[i].source for i in drawn)["b"] / len(drawn)
    assert abs(share_b - 0.75) < 0.02


def test_source_weights_name_missing_and_invalid_weights():
    samples = _samples({"vqa_rad": 2, "slake": 2})
    with pytest.raises(DataError, match=r"no weight for source\(s\) \['slake'\]"):
        source_weights(samples, {"vqa_rad": 1.0})
    with pytest.raises(DataError, match="must be >= 0 and not all 0"):
        source_weights(samples, {"vqa_rad": 0.0, "slake": 0.0})
    # a weight for a source no sample comes from (filtered away, or dropped from the mix) is ignored
    assert source_weights(samples, {"vqa_rad": 1.0, "slake": 1.0, "medpix": 5.0}) == [0.5] * 4


def test_length_grouping_cuts_padding_and_keeps_every_index():
    g = torch.Generator().manual_seed(0)
    lengths = [8 if torch.rand(1, generator=g) < 0.7 else 60 for _ in range(512)]  # short VQA + long captions
    plain = TrainSampler(len(lengths), batch_size=8, seed=0)
    grouped = TrainSampler(len(lengths), batch_size=8, lengths=lengths, seed=0)
    before, after = padding_share(lengths, list(plain), 8), padding_share(lengths, list(grouped), 8)
    assert before > 0.4 and after < before / 5
    assert sorted(grouped) == list(range(512))  # a permutation: every sample once per epoch


def test_sampler_is_seeded_and_changes_order_per_epoch():
    a, b = (
        TrainSampler(50, 4, lengths=list(range(50)), seed=3),
        TrainSampler(50, 4, lengths=list(range(50)), seed=3),
    )
    first = list(a)
    assert first == list(b) and len(a) == 50
    a.set_epoch(1)
    assert list(a) != first


def test_text_lengths_count_question_and_answer_tokens(tiny):
    tok = tiny("qwen2_vl").processor.tokenizer
    s = VQASample(id="1", image="x", question="Is there a lesion?", answer="yes")
    expected = len(tok("Is there a lesion?", add_special_tokens=False)["input_ids"]) + len(
        tok("yes", add_special_tokens=False)["input_ids"]
    )
    assert text_lengths([s], tok) == [expected]


def test_datamodule_train_loader_uses_weights_and_grouping_only_on_train(release, tiny):
    from medvqa.data.datamodule import MedVQADataModule
    from medvqa.data.formats import medpix, mix, vqa_rad

    sources = {"vqa_rad": {"reader": vqa_rad.read}, "medpix": {"reader": medpix.read}}
    weights = {"vqa_rad": 1.0, "medpix": 3.0}
    dm = MedVQADataModule(lambda root, bad: mix.read(root, bad, sources), str(release("mix")), batch_size=4,
                          group_by_length=True, sampling_weights=weights, processor=tiny("qwen2_vl").processor)  # fmt: skip
    dm.setup()
    sampler = dm.train_dataloader().sampler
    train = dm.splits["train"]
    assert isinstance(sampler, TrainSampler) and sampler.lengths == text_lengths(
        train, dm.collator().tokenizer
    )
    n = Counter(s.source for s in train)
    assert sampler.weights.tolist() == pytest.approx([weights[s.source] / n[s.source] for s in train])
    assert not isinstance(dm.val_dataloader().sampler, TrainSampler)
    plain = MedVQADataModule(dm.reader, str(release("mix")), batch_size=4, processor=dm.processor)
    plain.setup()
    assert not isinstance(plain.train_dataloader().sampler, TrainSampler)  # the seeded shuffle, as before


def test_group_by_image_keeps_an_images_questions_together_and_reshuffles_per_epoch():
    images = [f"img{i % 5}" for i in range(20)]  # 5 images, 4 questions each, interleaved in the release
    sampler = TrainSampler(20, batch_size=4, images=images, seed=0)
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(20))  # every question once per epoch
        runs = [images[i] for i in order]
        assert all(len(set(runs[b : b + 4])) == 1 for b in range(0, 20, 4))  # each batch: one image
        epochs.append(order)
    assert epochs[0] != epochs[1]  # a new order of images (and of questions within them) each epoch
    again = TrainSampler(20, batch_size=4, images=images, seed=0)
    again.set_epoch(1)
    assert list(again) == epochs[1]  # a pure function of (seed, epoch): what resuming mid-epoch needs


def test_group_by_image_with_source_weights_groups_the_drawn_questions():
    samples = _samples({"a": 6, "b": 2})
    images = [f"{s.source}{i % 2}" for i, s in enumerate(samples)]
    sampler = TrainSampler(8, 4, weights=source_weights(samples, {"a": 1.0, "b": 1.0}), seed=0, images=images)
    order = list(sampler)
    seen = [images[i] for i in order]
    assert (
        len(order) == 8 and sum(a != b for a, b in zip(seen, seen[1:], strict=False)) == len(set(seen)) - 1
    )  # one run each


def test_group_by_image_and_by_length_together_are_refused():
    with pytest.raises(ValueError, match="data.group_by_length and data.group_by_image"):
        TrainSampler(4, 2, lengths=[1, 2, 3, 4], images=["a", "a", "b", "b"])


def test_datamodule_groups_by_image_only_when_asked(release, tiny):
    from medvqa.data.datamodule import MedVQADataModule
    from medvqa.data.formats import vqa_rad

    root = release("vqa_rad")
    dm = MedVQADataModule(vqa_rad.read, str(root), batch_size=4, split_by="group", group_by_image=True,
                          processor=tiny("qwen2_vl").processor)  # fmt: skip
    dm.setup()
    train = dm.splits["train"]
    keys = [train[i].image_key for i in dm.train_sampler()]
    changes = sum(a != b for a, b in zip(keys, keys[1:], strict=False))
    assert len(set(keys)) < len(keys) and changes == len(set(keys)) - 1  # each image's questions: one run
    plain = MedVQADataModule(vqa_rad.read, str(root), split_by="group", processor=tiny("qwen2_vl").processor)
    plain.setup()
    assert plain.train_sampler() is None  # the seeded shuffle, as before
