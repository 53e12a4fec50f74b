"""Reading an answer file (`evaluate predictions=`): a line that is not UTF-8 text (a binary file given by
mistake) is a one-line user error naming the key and the line, not a UnicodeDecodeError."""

from __future__ import annotations

import pytest

from medvqa.cli import is_user_error
from medvqa.eval.answer_file import read_answers


def test_a_binary_answer_file_names_the_line(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    with pytest.raises(ValueError, match=rf"predictions={path} line 1 is not UTF-8 text") as e:
        read_answers(path)
    assert "\n" not in str(e.value) and is_user_error(e.value)


def test_a_non_utf8_line_after_good_ones_is_named_by_its_number(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_bytes(b'{"id": "a", "prediction": "yes"}\n\n{"id": "b", "prediction": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"line 3 is not UTF-8 text"):
        read_answers(path)
    path.write_bytes(b'{"id": "a", "prediction": "yes"}\n{"id": "b", "prediction": "caf\xc3\xa9"}\n')
    assert read_answers(path)[1][1]["prediction"] == "café"
