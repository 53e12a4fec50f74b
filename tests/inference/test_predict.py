"""`python -m medvqa.predict` end to end on a tiny trained run: one image, a questions file, a folder; the
answers equal the run's own test predictions; zero-shot model= (with and without adapter=); run= refuses
keys the run decides."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medvqa.data.errors import DataError
from medvqa.inference.polar import option_of
from medvqa.predict import answer, check_modes
from tests.conftest import ROOT
from tests.inference.conftest import predict_cfg, write_jsonl

TINY_MODEL = ["model=tiny_qwen2_vl", "model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1",
              "model.image_size=56"]  # fmt: skip


def predict(out: Path, *overrides: str) -> list[dict]:
    """The command in-process (its checks, answers and files); the rows of its predictions.jsonl."""
    cfg = predict_cfg(*overrides)
    check_modes(cfg, list(overrides))
    answer(cfg, out)
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def medvqa_predict(*overrides: str) -> subprocess.CompletedProcess:
    environ = os.environ | {"PYTHONPATH": str(ROOT)}
    environ.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "medvqa.predict", *overrides], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def questions(rows: list[dict]) -> list[dict]:
    return [{"id": r["id"], "image": r["image"], "question": r["question"]} for r in rows]


def test_one_image_prints_the_answer_with_its_confidence(run_dir, run_rows, tmp_path):
    row = next(r for r in run_rows if r["answer_type"] == "closed")
    done = medvqa_predict(f"run={run_dir}", f"image={row['image']}", f"question={row['question']}",
                          f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert line["answer"] == row["prediction"] and line["kind"] == "closed"
    shown = "no confidence" if line["confidence"] is None else f"confidence {line['confidence']:.3f}"
    assert f"{row['prediction']}  (closed question, {shown}" in done.stdout
    assert set(line) >= {"id", "image", "question", "answer", "kind", "confidence", "options", "mean_logprob"}


def test_a_closed_answer_naming_no_option_prints_no_confidence():
    from medvqa.predict import summary_line

    row = {"answer": "liver", "kind": "closed", "confidence": None, "mean_logprob": -0.5}
    assert (
        summary_line(row) == "liver  (closed question, no confidence: the answer names none of its options)"
    )
    assert (
        summary_line(row | {"answer": "yes", "confidence": 0.9}) == "yes  (closed question, confidence 0.900)"
    )


def test_a_questions_file_answers_every_test_item_as_the_run_evaluated_it(run_dir, run_rows, tmp_path):
    # relative image paths, resolved against the questions file's folder
    folder = tmp_path / "in"
    shutil.copytree(Path(run_rows[0]["image"]).parent, folder / "images")
    rel = [q | {"image": f"images/{Path(q['image']).name}"} for q in questions(run_rows)]
    rows = predict(
        tmp_path, f"run={run_dir}", f"inputs={write_jsonl(folder / 'q.jsonl', rel)}", "batch_size=5"
    )
    assert [r["id"] for r in rows] == [r["id"] for r in run_rows]
    assert [r["answer"] for r in rows] == [r["prediction"] for r in run_rows]
    for got, truth in zip(rows, run_rows, strict=True):
        assert got["kind"] == truth["answer_type"]  # the synthetic closed questions are all polar
        if got["kind"] == "closed":
            named = option_of(got["answer"], list(got["options"]))  # none named: no confidence (null)
            assert got["confidence"] == (got["options"][named] if named else None)
            assert sum(got["options"].values()) == pytest.approx(1.0, abs=1e-6)
        else:
            assert "confidence" not in got
        assert got["mean_logprob"] <= 0.0


def test_a_folder_gets_one_question_for_every_image_sorted(run_dir, run_rows, predictor, tmp_path):
    images = sorted(Path(run_rows[0]["image"]).parent.glob("*.jpg"))[:3]
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(images):
        shutil.copy(image, folder / ("sub" if i == 0 else "") / f"{i}.jpg")
    (folder / ".hidden.jpg").write_bytes(b"not read")
    rows = predict(tmp_path, f"run={run_dir}", f"inputs={folder}", "question=Which organ is shown?")
    assert [r["id"] for r in rows] == ["1.jpg", "2.jpg", "sub/0.jpg"]
    expected = [predictor.answer(folder / r["id"], "Which organ is shown?").answer for r in rows]
    assert [r["answer"] for r in rows] == expected


def test_zero_shot_model_answers_as_evaluating_the_base_model_and_adapter_as_the_run(
    run_dir, run_rows, tmp_path
):
    from medvqa.inference import merge
    from medvqa.inference.export import check_batches, eval_stage
    from medvqa.models.runs import load_base

    cfg = OmegaConf.load(run_dir / "config.yaml")
    base = load_base(run_dir)
    evaluated = merge.answer_items(eval_stage(cfg, base.model.eval(), base.processor),
                                   check_batches(cfg, base.processor, None, "cpu"))  # fmt: skip
    inputs = write_jsonl(tmp_path / "q.jsonl", questions(run_rows))
    same = [*TINY_MODEL, f"inputs={inputs}", f"inputs_root={Path(run_rows[0]['image']).parent}",
            "data.max_pixels=null", f"stage.max_new_tokens={cfg.stage.max_new_tokens}"]  # fmt: skip
    (tmp_path / "zero").mkdir()
    zero = predict(tmp_path / "zero", *same)
    assert [r["answer"] for r in zero] == [a.answer for a in evaluated]
    (tmp_path / "adapter").mkdir()
    adapted = predict(tmp_path / "adapter", *same, f"adapter={run_dir / 'adapter'}")
    assert [r["answer"] for r in adapted] == [r["prediction"] for r in run_rows]


@pytest.mark.parametrize(
    "extra", ["model=tiny_qwen2_vl", "stage.max_new_tokens=5", "data.system_prompt=Be brief"]
)
def test_run_refuses_keys_the_run_decides(run_dir, tmp_path, extra):
    cfg = predict_cfg(f"run={run_dir}", f"image={tmp_path}/x.png", "question=Is it?", extra)
    with pytest.raises(ValueError, match=f"{extra.split('=')[0]}=.* does not apply with run="):
        check_modes(cfg, [f"run={run_dir}", extra])


def test_neither_run_nor_model_is_one_error_line(tmp_path):
    done = medvqa_predict(f"image={tmp_path}/x.png", "question=Is it?", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: run= is missing")


def test_answers_are_written_batch_by_batch_and_kept_when_interrupted(
    run_dir, run_rows, tmp_path, monkeypatch
):
    from medvqa.inference.predictor import Predictor

    inputs = write_jsonl(tmp_path / "q.jsonl", questions(run_rows)[:6])
    answer_batch, calls = Predictor._answer_batch, []

    def interrupted_third(self, ready):  # Ctrl-C while the third batch is answered
        calls.append(len(ready))
        if len(calls) == 3:
            lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
            assert len(lines) == 4  # the first two batches are on disk already, not held for the end
            raise KeyboardInterrupt
        return answer_batch(self, ready)

    monkeypatch.setattr(Predictor, "_answer_batch", interrupted_third)
    with pytest.raises(SystemExit) as stop:
        predict(tmp_path / "out", f"run={run_dir}", f"inputs={inputs}", "batch_size=2")
    assert stop.value.code == 130
    kept = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in kept] == [r["prediction"] for r in run_rows[:4]]


def test_an_undecodable_image_in_error_mode_keeps_the_answers_before_it(run_dir, run_rows, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [*questions(run_rows)[:2], {"id": "b", "image": str(broken), "question": "Is it?"}]
    inputs = write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(
        DataError, match=r"broken\.png: cannot decode image.*\(the 2 answers made before it are in"
    ):
        predict(tmp_path / "out", f"run={run_dir}", f"inputs={inputs}", "batch_size=2")
    kept = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in kept] == [r["prediction"] for r in run_rows[:2]]


def test_a_question_is_taken_as_typed_commas_and_quotes_included(run_dir, run_rows, tmp_path):
    question = "Is there a lesion, and is it in the patient's left lung? (a=b, [1,2])"
    done = medvqa_predict(f"run={run_dir}", f"image={run_rows[0]['image']}", f"question={question}",
                          f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert line["question"] == question


@pytest.mark.parametrize(
    "question",
    ["Is it big, or small?", "It's the patient's left, isn't it?", 'Is the "mass" 2=3 cm [1,2] {a: b}?',
     "a back\\slash, a \\' and a trailing one\\", "What does ${x} mean?", "null", "  spaced  "],
)  # fmt: skip
def test_raw_values_give_hydra_the_text_exactly_as_typed(question, tmp_path):
    from medvqa.cli import raw_values

    argv = raw_values(
        ["medvqa/predict.py", f"question={question}", f"image={tmp_path}/a, b.png", "batch_size=2"]
    )
    cfg = predict_cfg(*argv[1:])
    assert cfg.question == question and cfg.image == f"{tmp_path}/a, b.png" and cfg.batch_size == 2
    assert raw_values(["question='already quoted, for Hydra'"]) == ["question='already quoted, for Hydra'"]
