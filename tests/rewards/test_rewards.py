"""Reward functions on hand-made completions."""

import math

import pytest
import torch

from medvqa.rewards import WeightedRewards
from medvqa.rewards.match import answer_match, format_reward, modality_match, plane_match
from medvqa.rewards.tags import answer_text, reasoning_text

GOOD = "<think>tall ellipse, two dark lungs</think><plane>coronal</plane><answer>chest</answer>"


def test_format_accepts_the_structure_with_optional_tags_in_either_order():
    ok = [
        "<think>x</think><answer>yes</answer>",
        GOOD,
        "<think>x</think>\n<modality>CT</modality> <plane>axial</plane>\n<answer>no</answer>\n",
    ]
    bad = [
        "yes",
        "<answer>yes</answer>",  # no reasoning
        "<think>x</think><answer>yes</answer> trailing",
        "<answer>yes</answer><think>x</think>",  # wrong order
        "<think>x</think><plane>a</plane><plane>b</plane><answer>yes</answer>",  # a tag twice
        "<think>x</think><answer></answer>",  # empty answer
    ]
    assert format_reward(ok) == [1.0, 1.0, 1.0]
    assert format_reward(bad) == [0.0] * len(bad)


def test_answer_and_reasoning_extraction():
    assert answer_text(GOOD) == "chest" and answer_text("  Yes ") == "Yes"
    assert reasoning_text(GOOD) == "tall ellipse, two dark lungs"


def test_answer_match_closed_is_exact_and_open_is_f1_or_recall():
    completions = ["<think>t</think><answer>No.</answer>", "normal", "left lower lobe", "left lower lobe"]
    truths, kinds = ["no", "no", "left lobe", "left lobe"], ["closed", "closed", "open", "open"]
    # "normal" contains "no" but is not it; open: shared 2 words, precision 2/3, recall 1 -> F1 0.8
    assert answer_match(completions, truths, kinds) == pytest.approx([1.0, 0.0, 0.8, 0.8])
    assert answer_match(completions, truths, kinds, open_score="recall")[2] == 1.0
    with pytest.raises(ValueError, match="open_score"):
        answer_match(completions, truths, kinds, open_score="bleu")


def test_answer_match_scores_closed_answers_as_the_metrics_do_so_hedging_earns_nothing():
    completions = ["Yes. The lesion is on the left", "yes, no", "<think>t</think><answer>no or yes</answer>",
                   "No; the heart is normal", "left and right"]  # fmt: skip
    truths = ["yes", "yes", "no", "no", "left and right"]
    assert answer_match(completions, truths, ["closed"] * 5) == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_plane_and_modality_match_with_synonyms_missing_tags_and_missing_labels():
    completions = [GOOD, "<think>t</think><modality>MR</modality><answer>a</answer>", "coronal", GOOD]
    plane = plane_match(completions, plane=["coronal", "axial", "coronal", ""])
    assert plane[:3] == [1.0, 0.0, 0.0] and math.isnan(plane[3])  # untagged text earns nothing
    modality = modality_match(completions, modality=["CT", "MRI", "CT", "CT - noncontrast"])
    assert modality == [0.0, 1.0, 0.0, 0.0]
    tagged_ct = "<think>t</think><modality>ct</modality><answer>a</answer>"
    assert modality_match([tagged_ct], modality=["CT - noncontrast"]) == [1.0]


def test_weighted_total_skips_rewards_that_do_not_apply():
    rewards = WeightedRewards({"format": 0.5, "answer_match": 1.0, "plane_match": 2.0, "modality_match": 0.0})
    assert rewards.names == ["format", "answer_match", "plane_match"]  # weight 0: not computed
    fields = {"answer": ["chest", "chest"], "answer_type": ["open", "open"], "plane": ["coronal", ""]}
    raw = rewards.score([GOOD, "chest"], fields)
    assert raw[0].tolist() == [1.0, 1.0, 1.0]
    assert raw[1, :2].tolist() == [0.0, 1.0] and math.isnan(raw[1, 2])
    assert rewards.total(raw).tolist() == pytest.approx([0.5 + 1.0 + 2.0, 1.0])


def test_unknown_reward_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown reward 'bleu'.*answer_match"):
        WeightedRewards({"bleu": 1.0})
    with pytest.raises(ValueError, match="unknown reward 'captions'"):
        WeightedRewards({"format": 1.0}, {"captions": {"threshold": 0.5}})
    with pytest.raises(ValueError, match="at least one reward"):
        WeightedRewards({"format": 0.0})


def test_options_reach_the_reward():
    rewards = WeightedRewards({"answer_match": 1.0}, {"answer_match": {"open_score": "recall"}})
    raw = rewards.score(["left lower lobe"], {"answer": ["left lobe"], "answer_type": ["open"]})
    assert torch.equal(raw, torch.tensor([[1.0]]))
