"""Dynamic sampling's pieces (medvqa/stages/grpo_sampling.py) and the flat-group test, by hand."""

import pytest
import torch

from medvqa.losses.grpo import zero_std_groups
from medvqa.stages.grpo_sampling import FlatGroupWatch, group_rows, select_rows, splice


def test_flat_groups_are_the_ones_with_equal_rewards():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0])  # groups of 2
    assert zero_std_groups(rewards, 2).tolist() == [True, False, True, True]
    assert group_rows(zero_std_groups(rewards, 2), 2).tolist() == [0, 1, 4, 5, 6, 7]
    assert group_rows(torch.tensor([False, True]), 3).tolist() == [3, 4, 5]


def test_select_rows_keeps_each_rows_own_image_patches():
    # Qwen-VL: 3 rows, images of 2, 1 and 3 patches flattened into pixel_values (6, D)
    inputs = {"input_ids": torch.arange(9).view(3, 3), "image_grid_thw": torch.tensor([[1, 1, 2], [1, 1, 1], [1, 1, 3]]),
              "pixel_values": torch.arange(6).float().unsqueeze(1)}  # fmt: skip
    out = select_rows(inputs, torch.tensor([0, 2]))
    assert out["input_ids"].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert out["pixel_values"].flatten().tolist() == [0.0, 1.0, 3.0, 4.0, 5.0]
    assert out["image_grid_thw"].tolist() == [[1, 1, 2], [1, 1, 3]]


def test_splice_pads_token_rows_of_another_length():
    old = torch.tensor([[5, 6], [7, 8], [9, 1]])
    assert splice(old, torch.tensor([1]), torch.tensor([[2, 3, 4]]), pad=0).tolist() == [
        [5, 6, 0], [2, 3, 4], [9, 1, 0]]  # fmt: skip
    assert splice(old, torch.tensor([0, 2]), torch.tensor([[4], [3]]), pad=-1).tolist() == [
        [4, -1], [7, 8], [3, -1]]  # fmt: skip
    assert splice(torch.zeros(3, dtype=torch.bool), torch.tensor([2]), torch.tensor([True]), 0).tolist() == [
        False, False, True]  # fmt: skip


def test_watch_warns_once_per_stretch_above_the_threshold():
    watch = FlatGroupWatch(threshold=0.9, window=3)
    assert [watch.update(f) for f in [1.0, 1.0]] == [None, None]  # the window is not full yet
    assert watch.update(0.85) == pytest.approx(0.95)  # mean of (1, 1, 0.85) > 0.9: warn
    assert [watch.update(f) for f in [1.0, 1.0]] == [None, None]  # the same stretch: quiet
    assert watch.update(0.5) is None  # mean 0.83: the stretch ends
    assert [watch.update(1.0) for _ in range(3)] == [None, None, 1.0]  # a new stretch warns again
