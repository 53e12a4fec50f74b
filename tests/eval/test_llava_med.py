"""LLaVA-Med answer-file export: the keys their scripts read, deterministic ids, order kept, and back."""

import json

import pytest

from medvqa.eval.llava_med import ALPHABET, answer_id, answer_line, read_answer_file, write_answer_file

ROWS = [
    {"id": "vqa_rad_0001", "question": "Is there a fracture?", "answer": "yes", "answer_type": "closed",
     "prediction": "yes", "completion": "Yes, a fracture of the radius.", "scores": {"closed_acc": 1.0},
     "organ": "hand", "question_type": ""},
    {"id": "vqa_rad_0002", "question": "Which organ is shown?", "answer": "liver", "answer_type": "open",
     "prediction": "the liver", "scores": {"token_f1": 0.67}},
]  # fmt: skip


def test_lines_have_llava_med_keys_in_order(tmp_path):
    path = write_answer_file(ROWS, tmp_path / "answers.jsonl", model_id="qwen2_vl_2b-lora")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [list(line) for line in lines] == [["question_id", "prompt", "text", "answer_id", "model_id",
                                               "metadata"]] * 2  # fmt: skip
    first, second = lines
    assert first["question_id"] == "vqa_rad_0001" and first["prompt"] == "Is there a fracture?"
    assert first["text"] == "Yes, a fracture of the radius."  # the whole generation, as LLaVA-Med stores it
    assert second["text"] == "the liver"  # no separate completion: the prediction is the generation
    assert first["model_id"] == "qwen2_vl_2b-lora"
    assert first["metadata"] == {
        "answer": "yes",
        "answer_type": "closed",
        "prediction": "yes",
        "organ": "hand",
    }


def test_scored_answer_can_be_exported_instead():
    assert answer_line(ROWS[0], "m", text_field="prediction")["text"] == "yes"
    with pytest.raises(ValueError, match="text_field"):
        answer_line(ROWS[0], "m", text_field="answer")
    with pytest.raises(ValueError, match="lacks"):
        answer_line({"id": "q1"}, "m")


def test_answer_id_is_deterministic_and_shortuuid_shaped(tmp_path):
    a = answer_id("model-a", "q1")
    assert a == answer_id("model-a", "q1") and len(a) == 22 and set(a) <= set(ALPHABET)
    assert len({a, answer_id("model-b", "q1"), answer_id("model-a", "q2")}) == 3
    one = write_answer_file(ROWS, tmp_path / "1.jsonl", "m").read_bytes()
    assert write_answer_file(ROWS, tmp_path / "2.jsonl", "m").read_bytes() == one


def test_read_back_and_read_theirs(tmp_path):
    path = write_answer_file(ROWS, tmp_path / "answers.jsonl", "m")
    assert read_answer_file(path) == [
        {"id": "vqa_rad_0001", "prediction": "Yes, a fracture of the radius."},
        {"id": "vqa_rad_0002", "prediction": "the liver"},
    ]
    theirs = tmp_path / "theirs.jsonl"  # LLaVA-Med's own writer: int ids, random answer_id
    theirs.write_text('{"question_id": 7, "prompt": "q", "text": "no", "answer_id": "x", "model_id": "m", '
                      '"metadata": {}}\n\n')  # fmt: skip
    assert read_answer_file(theirs) == [{"id": "7", "prediction": "no"}]
    theirs.write_text('{"question_id": 7}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_answer_file(theirs)
