"""Pre-flight token budget (medvqa/data/preflight.py, medvqa/callbacks/preflight.py): exact lengths as the
collator builds them, over-long samples refused naming them or skipped and counted, through medvqa.run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvqa.data.collate import VQACollator
from medvqa.data.errors import BadSamples, DataError
from medvqa.data.images import open_image
from medvqa.data.preflight import TOO_LONG, Budget, TokenCounter, enforce, image_size, shrunk_size
from medvqa.data.sample import VQASample
from medvqa.models.tiny import build_tiny
from medvqa.run import build, compose_config, train
from tests.train_helpers import tiny_run

SIZES = [(56, 56), (300, 200), (1500, 900), (64, 640), (2000, 1999)]
QUESTIONS = ["Is there a lesion?", "What organ is shown in this image, precisely?", "Where? ", "yes or no\n"]
ANSWERS = ["yes", "left lower lobe", "no", "a mass in the liver with effusion"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[VQASample]:
    folder, rng = tmp_path_factory.mktemp("images"), np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"{i}.{'jpg' if i % 2 else 'png'}"  # JPEGs are drafted at reduced scale when big
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return [VQASample(id=str(i), image=paths[i % len(paths)], question=QUESTIONS[(i * 3) % 4],
                      answer=ANSWERS[(i * 7) % 4]) for i in range(15)]  # fmt: skip


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "paligemma"])
@pytest.mark.parametrize("pixels", [None, (3136, 200_000)])
def test_lengths_equal_what_the_collator_builds(samples, family, pixels):
    vlm = build_tiny(family, hidden_size=32, num_layers=1, vision_depth=1)
    low, high = pixels or (None, None)
    collator = VQACollator(vlm.processor, "You are a radiologist." if pixels else None, min_pixels=low,
                           max_pixels=high, instruction="Answer briefly." if pixels else None)  # fmt: skip
    budget = TokenCounter(collator, max_side=1024).measure(samples)
    built = [
        int(collator([{"sample": s, "image": open_image(s, 1024)}])["attention_mask"][0].sum())
        for s in samples
    ]
    assert budget.lengths == built
    if pixels and family != "paligemma":  # image tokens follow the resized grid: big images, many tokens
        assert budget.most_image_tokens > 100 and len(set(budget.image_tokens)) == len(SIZES)


def test_the_size_comes_from_the_header_as_the_dataset_shrinks_it(samples):
    for s in samples[: len(SIZES)]:
        assert image_size(s, 1024) == open_image(s, 1024).size
    for w, h in [(4000, 4000), (4000, 3), (3, 4000), (1025, 1024), (1999, 2000), (777, 1500)]:
        img = Image.new("RGB", (w, h))
        img.thumbnail((1024, 1024))
        assert shrunk_size(w, h, 1024) == img.size


def test_a_completion_budget_replaces_the_answer_for_grpo(samples):
    collator = VQACollator(build_tiny(hidden_size=32, num_layers=1, vision_depth=1).processor)
    plain, grpo = (
        TokenCounter(collator).measure(samples[:4]),
        TokenCounter(collator, completion_tokens=48).measure(samples[:4]),
    )
    answers = [len(a) for a in collator.answer_ids([s.answer for s in samples[:4]])]
    assert [g - p for g, p in zip(grpo.lengths, plain.lengths, strict=True)] == [48 - a for a in answers]


def test_enforce_refuses_naming_the_sample_its_length_and_the_knob_or_skips_and_counts():
    rows = [VQASample(id=f"q{i}", image="x.png", question="?", answer="a", origin=f"ann.json row {i}")
            for i in range(3)]  # fmt: skip
    budget = Budget(lengths=[10, 900, None], image_tokens=[4, 800, None])
    with pytest.raises(DataError) as e:
        enforce(rows, budget, 512, BadSamples("error"))
    assert str(e.value).startswith(
        "ann.json row 1 (sample q1): longer than data.max_length. It is 900 tokens (800 of"
    )
    assert "data.max_length=512" in str(e.value) and "data.max_pixels" in str(e.value)
    bad = BadSamples("skip")
    assert [s.id for s in enforce(rows, budget, 512, bad)] == ["q0", "q2"]  # unreadable: left to the loader
    assert bad.skipped == {TOO_LONG: 1}
    kept = budget.within(512)  # the memory estimate sizes what will train, not what was skipped
    assert (kept.longest, kept.most_image_tokens, len(kept.lengths)) == (10, 4, 2)


def extended_synthetic(tmp_path: Path) -> tuple[Path, list[str]]:
    """The tiny synthetic set (VQA-RAD format) with two extra training rows: a 3000-word question, and a
    4000x4000 image (under images.py's 8192x8192 bomb limit; shrunk to 1024 a side, ~1300 image tokens
    at data.max_pixels=1048576, as with a processor whose default max_pixels is large)."""
    data = tmp_path / "data"
    cfg = compose_config(tiny_run(data), tmp_path / "probe")
    _, datamodule, _ = build(cfg)  # generates the set; a training image's patient keeps the rows in train
    train = datamodule.splits["train"][0]
    folder = Path(train.image).parents[1]
    ann = folder / "VQA_RAD Dataset Public.json"
    rows = json.loads(ann.read_text())
    anchor = next(r for r in rows if r["image_name"] == Path(train.image).name)
    big = "synpic99999.jpg"
    Image.new("RGB", (4000, 4000), (90, 90, 90)).save(folder / "VQA_RAD Image Folder" / big)
    meta = json.loads((folder / "synthetic_meta.json").read_text())
    meta[big] = meta[anchor["image_name"]]
    (folder / "synthetic_meta.json").write_text(json.dumps(meta))
    long_row = anchor | {
        "qid": 90001,
        "qid_linked_id": "long-1",
        "question": "Is there a lesion " * 1000 + "?",
    }
    big_row = anchor | {"qid": 90002, "qid_linked_id": "big-1", "image_name": big}
    ann.write_text(json.dumps(rows + [long_row, big_row]))
    return data, ["vqa_rad-90001", "vqa_rad-90002"]


BUDGET = ("data.max_length=512", "data.max_pixels=1048576", "data.limit={train:null,val:4,test:4}", "trainer.max_steps=2",
          "trainer.val_check_interval=2")  # fmt: skip


def test_over_long_samples_stop_the_run_naming_the_sample(tmp_path):
    data, ids = extended_synthetic(tmp_path)
    with pytest.raises(
        DataError, match=r"\(sample vqa_rad-9000[12]\): longer than data.max_length. It is \d+ tokens"
    ):
        train(compose_config(tiny_run(data, *BUDGET), tmp_path / "run"))


def test_with_on_bad_sample_skip_they_are_left_out_and_counted_in_run_info(tmp_path):
    data, ids = extended_synthetic(tmp_path)
    cfg = compose_config(tiny_run(data, *BUDGET, "data.on_bad_sample=skip"), tmp_path / "run")
    train(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["skipped_while_reading"] == {TOO_LONG: 2}
