"""Bad inputs to `python -m medvqa.predict` follow data.on_bad_sample: error stops with one line naming the
line (or file) and the fix; skip answers the rest, counts the bad ones and lists them in skipped.jsonl.
A questions file on the command line is the user's own: absolute and `../` image paths are taken; with
inputs_root= an image path escaping that folder is refused however it is written. A folder of inputs
leaves out the files that are not images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from medvqa.data.errors import DataError
from tests.inference.conftest import write_jsonl
from tests.inference.test_predict import medvqa_predict, predict

BAD = {  # line -> what the error names
    "missing file": ({"image": "gone.jpg", "question": "Is it?"}, r"image file not found\. Expected .*gone\.jpg"),
    "corrupt image": ({"image": "corrupt.jpg", "question": "Is it?"}, r"corrupt\.jpg: cannot decode image"),
    "non-image": ({"image": "notes.txt", "question": "Is it?"}, r"notes\.txt: cannot decode image"),
    "empty question": ({"image": "good.jpg", "question": "  "}, r"empty question"),
    "not json": ('{"image": "good.jpg", ', r"not a JSON object"),
    "image_row not a number": ({"image": "good.jpg", "question": "Is it?", "image_row": "abc"},
                               r"image_row must be an integer\. Give the parquet row number, not 'abc'"),
    # written with errors="surrogateescape": the byte 0xff, so the line is not UTF-8
    "not utf-8": ('{"image": "good.jpg", "question": "Is it\udcff?"}', r"not UTF-8 text"),
}  # fmt: skip


@pytest.fixture
def folder(tmp_path, run_rows) -> Path:
    """inputs/ with good.jpg, a truncated JPEG, a text file; outside.jpg beside it (a real image)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = Path(run_rows[0]["image"])
    shutil.copy(good, inputs / "good.jpg")
    shutil.copy(good, tmp_path / "outside.jpg")
    (inputs / "corrupt.jpg").write_bytes(good.read_bytes()[:40])
    (inputs / "notes.txt").write_text("not an image")
    return inputs


def line(name: str, folder: Path) -> str:
    row = BAD[name][0]
    return row if isinstance(row, str) else json.dumps(row)


@pytest.mark.parametrize("name", list(BAD))
def test_error_mode_names_the_line_and_the_fix(run_dir, folder, tmp_path, name):
    path = folder / "q.jsonl"
    path.write_text(
        json.dumps({"image": "good.jpg", "question": "Is it?"}) + "\n" + line(name, folder) + "\n",
        errors="surrogateescape",
    )
    with pytest.raises(DataError, match=rf"inputs={path} line 2: .*{BAD[name][1]}.*on_bad_sample=skip") as e:
        predict(tmp_path, f"run={run_dir}", f"inputs={path}")
    assert "\n" not in str(e.value)
    written = tmp_path / "predictions.jsonl"
    assert not written.exists() or written.read_text() == ""  # line 1 shares line 2's batch: not answered


@pytest.mark.parametrize("image", ["../outside.jpg", "ABSOLUTE"])
def test_absolute_and_parent_paths_on_the_command_line_are_the_users_own(run_dir, predictor, folder, tmp_path,
                                                                         image):  # fmt: skip
    image = str(folder.parent / "outside.jpg") if image == "ABSOLUTE" else image
    path = write_jsonl(folder / "q.jsonl", [{"image": image, "question": "Is it?", "id": "outside"}])
    (row,) = predict(tmp_path, f"run={run_dir}", f"inputs={path}")
    assert row["image"] == str(folder.parent / "outside.jpg")
    assert row["answer"] == predictor.answer(folder.parent / "outside.jpg", "Is it?").answer


@pytest.mark.parametrize("image", ["../outside.jpg", "ABSOLUTE"])
def test_inputs_root_keeps_every_image_path_inside_it(run_dir, folder, tmp_path, image):
    image = str(folder.parent / "outside.jpg") if image == "ABSOLUTE" else image
    path = write_jsonl(folder / "q.jsonl", [{"image": "good.jpg", "question": "Is it?"},
                                            {"image": image, "question": "Is it?"}])  # fmt: skip
    with pytest.raises(
        DataError, match=rf"line 2: image path escapes the inputs folder\. .*inputs_root={folder}"
    ):
        predict(tmp_path, f"run={run_dir}", f"inputs={path}", f"inputs_root={folder}")


def test_skip_mode_answers_the_rest_and_lists_what_it_skipped(run_dir, folder, tmp_path, capsys):
    good = {"image": "good.jpg", "question": "Is there a lesion in this image?"}
    text = json.dumps(good | {"id": "first"}) + "\n" + "".join(line(n, folder) + "\n" for n in BAD)
    path = folder / "q.jsonl"
    path.write_text(text + json.dumps(good | {"id": "last"}) + "\n", errors="surrogateescape")
    rows = predict(tmp_path, f"run={run_dir}", f"inputs={path}", "data.on_bad_sample=skip")
    assert [r["id"] for r in rows] == ["first", "last"]
    skipped = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert sorted(s["where"] for s in skipped) == sorted(
        f"inputs={path} line {n}" for n in range(2, 2 + len(BAD))
    )
    reasons = " | ".join(s["reason"] for s in skipped)
    for name, (_, pattern) in BAD.items():
        assert re.search(pattern.split(r"\.")[0], reasons), name
    out = capsys.readouterr().out
    assert f"answered 2 of {2 + len(BAD)} inputs" in out and f"skipped {len(BAD)} bad inputs" in out


def test_an_image_given_as_the_questions_file_is_one_error_line(run_dir, run_rows, tmp_path):
    done = medvqa_predict(f"run={run_dir}", f"inputs={run_rows[0]['image']}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [x for x in done.stderr.splitlines() if x.strip()]
    assert errors[-1].startswith(f"Error: inputs={run_rows[0]['image']} is not a questions file")
    assert f"image={run_rows[0]['image']} question=" in errors[-1]


def test_a_folder_leaves_out_what_is_not_an_image_and_reads_dicom_by_content(run_dir, predictor, folder,
                                                                              tmp_path, capsys):  # fmt: skip
    from pydicom.data import get_testdata_file

    (folder / "corrupt.jpg").unlink()
    write_jsonl(folder / "q.jsonl", [{"image": "good.jpg", "question": "Is it?"}])  # beside the scans
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "2062")  # a CD export: no extension
    rows = predict(tmp_path / "e", f"run={run_dir}", f"inputs={folder}", "question=Is it?")
    assert [r["id"] for r in rows] == ["2062", "good.jpg"]  # data.on_bad_sample=error, and nothing stopped
    assert rows[0]["answer"] == predictor.answer(get_testdata_file("CT_small.dcm"), "Is it?").answer
    assert (
        f"inputs={folder}: left out 2 files that are not images (notes.txt, q.jsonl)"
        in capsys.readouterr().out
    )
    rows = predict(
        tmp_path / "s", f"run={run_dir}", f"inputs={folder}", "question=Is it?", "data.on_bad_sample=skip"
    )
    skipped = [json.loads(x) for x in (tmp_path / "s" / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"]) for s in skipped] == [
        ("notes.txt", "not an image"),
        ("q.jsonl", "not an image"),
    ]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")  # an image by name: reported
    with pytest.raises(DataError, match=r"file broken\.jpg: .*cannot decode image.*on_bad_sample=skip"):
        predict(tmp_path / "b", f"run={run_dir}", f"inputs={folder}", "question=Is it?")


def test_a_bad_input_is_one_error_line_and_exit_1(run_dir, folder, tmp_path):
    path = write_jsonl(folder / "q.jsonl", [{"image": "corrupt.jpg", "question": "Is it?"}])
    done = medvqa_predict(f"run={run_dir}", f"inputs={path}", f"hydra.run.dir={tmp_path / 'h'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: inputs={path} line 1: ") and "data.on_bad_sample=skip" in last
