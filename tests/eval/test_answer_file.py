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


def test_harness_files_are_told_apart_and_their_faults_named(tmp_path):
    medevalkit = tmp_path / "results.json"
    medevalkit.write_text('[{"question": "q", "answer": "yes", "response": "Yes"}, {"question": "q"}]')
    with pytest.raises(ValueError, match=rf"predictions={medevalkit} item 1 is not a MedEvalKit result"):
        read_answers(medevalkit)
    medevalkit.write_text('[{"question": "q", "answer": 2, "response": "two"}]')
    kind, entries = read_answers(medevalkit)
    assert kind == "medevalkit" and entries[0] | {"where": ""} == {"where": "", "id": None, "question": "q",
                                                                   "answer": "2", "prediction": "two"}  # fmt: skip
    tsv = tmp_path / "model_VQA.tsv"
    tsv.write_text('"index"\t"question"\t"answer"\n"0"\t"q"\t"yes"\n')
    with pytest.raises(ValueError, match=r"has no 'prediction' column"):
        read_answers(tsv)
    lmms = tmp_path / "samples.jsonl"
    lmms.write_text(
        '{"doc_id": 0, "target": "yes", "filtered_resps": ["Yes"]}\n{"id": "a", "prediction": "no"}\n'
    )
    with pytest.raises(ValueError, match=r"mixes lmms-eval log_samples lines"):
        read_answers(lmms)
