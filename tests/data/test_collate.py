"""Label masking: only the answer tokens and the end-of-turn token are supervised, for every family."""

import numpy as np
import pytest
import torch
from PIL import Image

from medvqa.data.collate import IGNORE_INDEX, VQACollator
from medvqa.data.sample import VQASample


def _items(n=3):
    rng = np.random.default_rng(0)
    answers = ["yes", "left lower lobe", "12"]
    return [
        {
            "sample": VQASample(
                id=str(i), image="x", question=f"Question number {i}?", answer=answers[i % 3]
            ),
            "image": Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 60, 3), dtype=np.uint8)),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "paligemma"])
def test_only_answer_and_end_token_are_supervised(tiny, family):
    vlm = tiny(family)
    tok = vlm.processor.tokenizer
    collator = VQACollator(vlm.processor)
    items = _items()
    batch = collator(items)
    for i, item in enumerate(items):
        labels = batch["labels"][i]
        supervised = labels[labels != IGNORE_INDEX].tolist()
        expected = tok(item["sample"].answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert supervised == expected
        assert tok.decode(supervised, skip_special_tokens=True) == item["sample"].answer
        # supervised positions carry the same ids as the input, and sit after the whole prompt
        mask = labels != IGNORE_INDEX
        assert torch.equal(batch["input_ids"][i][mask], labels[mask])
        prompt_len = int(batch["prompt_attention_mask"][i].sum())
        assert mask[:prompt_len].sum() == 0 and mask[prompt_len : prompt_len + len(expected)].all()


def test_prompts_are_left_padded_and_full_sequences_right_padded(tiny):
    vlm = tiny("qwen2_vl")
    batch = VQACollator(vlm.processor)(_items())
    prompt_mask, full_mask = batch["prompt_attention_mask"], batch["attention_mask"]
    assert prompt_mask[:, -1].all(), "generation needs every prompt to end at the last position"
    assert full_mask[:, 0].all(), "training batches pad on the right"
    assert batch["meta"]["answer"] == ["yes", "left lower lobe", "12"]


def test_image_tokens_are_never_supervised(tiny):
    vlm = tiny("qwen2_vl")
    batch = VQACollator(vlm.processor)(_items())
    image_id = vlm.processor.image_token_id
    assert (batch["input_ids"] == image_id).any()
    assert not ((batch["labels"] == image_id).any())


def test_unreadable_items_are_dropped_and_counted(tiny):
    items = _items()
    items[1]["image"] = None
    batch = VQACollator(tiny("qwen2_vl").processor)(items)
    assert batch["n_skipped"] == 1 and batch["meta"]["id"] == ["0", "2"]


def test_max_pixels_bounds_image_tokens(tiny):
    vlm = tiny("qwen2_vl")
    big = [{"sample": VQASample(id="0", image="x", question="q?", answer="a"),
            "image": Image.new("RGB", (448, 448))}]  # fmt: skip
    small = VQACollator(vlm.processor, max_pixels=56 * 56, min_pixels=28 * 28)(big)
    large = VQACollator(vlm.processor, max_pixels=224 * 224, min_pixels=28 * 28)(big)
    assert small["image_grid_thw"].prod() < large["image_grid_thw"].prod()
    assert int(small["image_grid_thw"][0, 1:].prod()) * 14 * 14 <= 56 * 56


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_full_sequence_is_unpadded_prompt_then_answer_then_padding(tiny, family):
    vlm = tiny(family)
    collator = VQACollator(vlm.processor)
    batch = collator(_items())
    again = collator(_items())  # the second call is served from the prompt/answer caches
    token_keys = [k for k in batch if f"prompt_{k}" in batch]
    assert "input_ids" in token_keys and "attention_mask" in token_keys
    for i in range(3):
        keep = batch["prompt_attention_mask"][i].bool()
        n_prompt, n_full = int(keep.sum()), int(batch["attention_mask"][i].sum())
        for k in token_keys:
            assert torch.equal(batch[k][i][:n_prompt], batch[f"prompt_{k}"][i][keep]), k
        assert (batch["input_ids"][i][n_full:] == vlm.processor.tokenizer.pad_token_id).all()
        assert (batch["labels"][i][n_full:] == IGNORE_INDEX).all()
    for k in [*token_keys, "labels"]:
        assert torch.equal(batch[k], again[k]), k


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_modality_types_match_the_processors_own(tiny, family):
    processor = tiny(family).processor
    items = _items()
    ours = VQACollator(processor)(items)
    collator = VQACollator(processor)
    theirs = processor(text=[collator.prompt_text(i["sample"]) for i in items],
                       images=[i["image"] for i in items], return_tensors="pt", padding=True,
                       padding_side="left")  # fmt: skip
    assert (theirs["mm_token_type_ids"] == 1).any()
    assert torch.equal(ours["prompt_mm_token_type_ids"], theirs["mm_token_type_ids"])
