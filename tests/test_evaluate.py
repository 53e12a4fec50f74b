"""`python -m medvqa.evaluate`: one tiny trained run per module, re-scored every way the command offers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medvqa.eval.evaluation import metrics_from_rows
from medvqa.evaluate import compose_evaluate, evaluate
from medvqa.run import ROOT_DIR
from tests.train_helpers import tiny_run

QUICK = ["eval.text_metrics=[]", "callbacks.progress_bar=null"]
# the tiny run's model and data, for commands that do not read them from run= (zero-shot, adapter=)
TINY_MODEL = ["model.hidden_size=32", "model.num_layers=1", "model.vision_depth=1", "model.image_size=56"]


def tiny_data(data_dir) -> list[str]:
    return [o for o in tiny_run(data_dir) if o.startswith(("paths.", "data.", "stage.max_new_tokens"))]


@pytest.fixture
def run(tiny_run_dir):
    return tiny_run_dir


def _evaluate(tmp_path, *overrides: str) -> dict:
    return evaluate(compose_evaluate([*QUICK, *overrides], tmp_path))


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_run_reproduces_its_test_metrics_and_predictions(run, tmp_path):
    record = _evaluate(tmp_path, f"run={run}")
    own = json.loads((run / "metrics.json").read_text())
    assert record["test"] == own["test"]  # exactly: the same weights through the same scoring path
    assert record["generation"] == own["generation"] and record["adapter"] == str(run / "adapter")
    ours, theirs = _rows(tmp_path / "predictions.jsonl"), _rows(run / "predictions.jsonl")
    assert [(r["id"], r["prediction"]) for r in ours] == [(r["id"], r["prediction"]) for r in theirs]
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == own["test"]


def test_metrics_json_of_run_and_evaluate_name_the_scorer_and_have_intervals_around_the_estimate(
    run, tmp_path
):
    import torch

    for metrics in (json.loads((run / "metrics.json").read_text()), _evaluate(tmp_path, f"run={run}")):
        assert metrics["scorer"]["name"] == "medvqa-vqa-v1" and metrics["scorer"]["protocol"] == "medvqa"
        assert metrics["scorer"]["libraries"]["torch"] == torch.__version__.split("+")[0] or torch.__version__
        assert set(metrics["test_ci"]) >= {"closed_acc", "closed_exact", "exact_match", "open_recall"}
        for name, ci in metrics["test_ci"].items():
            assert ci["low"] - 1e-6 <= metrics["test"][f"test/{name}"] <= ci["high"] + 1e-6
            assert ci["n_boot"] == 2000 and ci["seed"] == 0 and ci["n"] > 0


def test_adapter_on_the_same_model_equals_run(run, tmp_path, data_dir):
    record = _evaluate(tmp_path, *TINY_MODEL, *tiny_data(data_dir), f"adapter={run / 'adapter'}")
    assert record["test"] == json.loads((run / "metrics.json").read_text())["test"]


def test_zero_shot_scores_the_base_model_on_every_test_question(run, tmp_path, data_dir):
    record = _evaluate(tmp_path, "model=tiny_qwen2_vl", *TINY_MODEL, *tiny_data(data_dir))
    assert record["adapter"] is None and record["run"] is None
    assert record["test"]["test/scored"] == 8 and len(_rows(tmp_path / "predictions.jsonl")) == 8
    # an untrained model and the trained adapter answer differently (the adapter is really left out)
    assert record["test"]["test/loss"] != json.loads((run / "metrics.json").read_text())["test"]["test/loss"]


def test_split_val_scores_the_validation_questions_as_the_run_validated_them(run, tmp_path):
    record = _evaluate(tmp_path, f"run={run}", "split=val")
    own = json.loads((run / "metrics.json").read_text())["val"]
    assert record["split"] == "val" and "test" not in record and "val_ci" in record
    assert {k: record["val"][k] for k in record["val"]} == {k: own[k] for k in record["val"]}
    assert len(_rows(tmp_path / "predictions.jsonl")) == 8


def test_out_of_domain_data_replaces_the_runs_data(run, tmp_path):
    from medvqa.data.fixtures import write

    root = write("slake", tmp_path / "slake")
    record = _evaluate(tmp_path / "out", f"run={run}", "data=slake", f"data.root={root}")
    rows = _rows(tmp_path / "out" / "predictions.jsonl")
    assert rows and all(str(root) in r["image"] for r in rows)
    assert record["test"]["test/scored"] == len(rows)


def test_predictions_file_scores_like_the_run_and_counts_unmatched_and_missing(run, tmp_path):
    theirs = _rows(run / "predictions.jsonl")
    lines = [{"question_id": r["id"], "text": r["prediction"]} for r in theirs]  # LLaVA-Med answer lines
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines))
    record = _evaluate(tmp_path / "all", f"run={run}", f"predictions={answers}")
    own = json.loads((run / "metrics.json").read_text())["test"]
    assert {k: v for k, v in own.items() if k != "test/loss"} == record["test"]
    assert record["predictions"] | {"file": None} == {"file": None, "format": "llava_med", "lines": 8, "matched": 8,
                                                      "unmatched": 0, "missing": 0}  # fmt: skip
    # one answer dropped, one id the split does not have
    partial = [*lines[1:], {"id": "elsewhere-1", "prediction": "yes"}]
    answers.write_text("".join(json.dumps(line) + "\n" for line in partial))
    record = _evaluate(tmp_path / "partial", f"run={run}", f"predictions={answers}")
    assert (record["predictions"]["unmatched"], record["predictions"]["missing"]) == (1, 1)
    rows = _rows(tmp_path / "partial" / "predictions.jsonl")
    assert len(rows) == 8 and rows[0]["missing"] is True and rows[0]["scores"]["exact_match"] == 0.0


def test_a_bad_predictions_line_is_named(run, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"id": "a", "prediction": "yes"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"predictions=.*line 2 has no id or no text answer"):
        _evaluate(tmp_path, f"run={run}", f"predictions={answers}")
    answers.write_text('{"id": "a", "prediction": "yes"}\nnot json\n')
    with pytest.raises(ValueError, match=r"line 2 is not JSON"):
        _evaluate(tmp_path, f"run={run}", f"predictions={answers}")


def test_llava_med_answer_file_follows_predictions(run, tmp_path):
    _evaluate(tmp_path, f"run={run}")
    lines, rows = _rows(tmp_path / "answers.jsonl"), _rows(tmp_path / "predictions.jsonl")
    assert all(
        set(line) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} for line in lines
    )
    assert [line["question_id"] for line in lines] == [r["id"] for r in rows]
    assert {line["model_id"] for line in lines} == {run.name}
    breakdown = json.loads((tmp_path / "breakdown.json").read_text())
    assert sum(c["n"] for c in breakdown["answer_type"].values()) == len(rows)


def test_a_bad_run_folder_is_one_error_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "medvqa.evaluate", f"run={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'o'}"],
        cwd=ROOT_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("Error: run=") and "has no config.yaml" in errors[-1]
    assert "Traceback" not in done.stderr


def test_visual_reliance_scores_blank_swapped_and_no_images(run, tmp_path):
    # 32 questions: the first 8 are one patient's, and a swap needs other patients
    record = _evaluate(
        tmp_path, f"run={run}", "eval.visual_reliance=true", "data.limit={train:24,val:8,test:32}"
    )
    reliance = record["visual_reliance"]
    closed = sum(r["answer_type"] == "closed" for r in _rows(tmp_path / "predictions.jsonl"))
    assert set(reliance["scores"]) == set(reliance["images"]) == {"real", "blank", "swapped", "none"}
    scores = reliance["scores"]
    best_free = max(scores["blank"]["closed_acc"], scores["none"]["closed_acc"])
    assert reliance["reliance"]["closed_acc"] == pytest.approx(scores["real"]["closed_acc"] - best_free)
    assert (
        reliance["reliance_ci"]["unit"] in ("patient", "image")
        and 0 <= reliance["sensitivity"]["any"]["mean"] <= 1
    )
    for mode in ("blank", "swapped", "none"):
        gain = reliance["gain"][mode]["closed_acc"]
        assert gain == pytest.approx(
            reliance["scores"]["real"]["closed_acc"] - reliance["scores"][mode]["closed_acc"]
        )
        assert reliance["closed_acc_gain_ci"][mode]["n"] == closed
    assert sum(e["n"] for e in reliance["by_question_type"].values()) == 32
    # the rows written are the real images' (the ablations re-ran the loop after them)
    assert record["test"] == metrics_from_rows(_rows(tmp_path / "predictions.jsonl"), "test") | {
        "test/loss": record["test"]["test/loss"]
    }


def test_visual_reliance_of_a_blank_images_run_scores_real_images_as_its_reference(run, tmp_path):
    """data.blank_images=true (as a run trained on blank images has): the headline is scored on blank
    images, but visual reliance's reference is the real images, the same numbers as without the flag."""
    limit = "data.limit={train:24,val:8,test:32}"
    plain = _evaluate(tmp_path / "plain", f"run={run}", "eval.visual_reliance=true", limit)["visual_reliance"]
    blank = _evaluate(
        tmp_path / "blank", f"run={run}", "eval.visual_reliance=true", limit, "data.blank_images=true"
    )
    reliance = blank["visual_reliance"]
    assert reliance["scores"] == plain["scores"] and reliance["sensitivity"] == plain["sensitivity"]
    # blank images change some answers of the real ones, so a blank "real" pass (sensitivity 0) would show
    assert plain["sensitivity"]["blank"]["mean"] > 0
    assert reliance["reference"].startswith("real images, scored again with data.blank_images switched off")
    assert blank["test"]["test/closed_acc"] == pytest.approx(
        reliance["scores"]["blank"]["closed_acc"], abs=1e-6
    )


def test_text_metrics_of_the_open_answers_equal_the_library_call(run, tmp_path):
    from medvqa.eval.text_metrics import text_metrics

    record = evaluate(compose_evaluate([f"run={run}", "callbacks.progress_bar=null",
                                        "eval.text_metrics=[bleu,rouge_l,bertscore]"], tmp_path))  # fmt: skip
    open_rows = [r for r in _rows(tmp_path / "predictions.jsonl") if r["answer_type"] == "open"]
    direct = text_metrics([r["prediction"] for r in open_rows], [r["answer"] for r in open_rows],
                          metrics=["bleu", "rouge_l", "bertscore"])  # fmt: skip
    for key, value in direct["corpus"].items():
        assert record["test"][f"test/{key}"] == pytest.approx(value, abs=1e-9)
    assert all("rouge_l" in r["scores"] and "bertscore_f1" in r["scores"] for r in open_rows)
    assert record["scorer"]["text_metrics"]["bertscore"]["model"] == "all-MiniLM-L6-v2"
    assert (
        "rouge_l" in record["test_ci"] and "bleu_1" not in record["test_ci"]
    )  # corpus BLEU has no item mean


def test_missing_java_is_refused_before_the_model_loads(run, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"eval.text_metrics=\['meteor'\]: .*java.*default-jre-headless"):
        evaluate(compose_evaluate([f"run={run}", "eval.text_metrics=[meteor]"], tmp_path))
    assert not (tmp_path / "metrics.json").exists()


def test_closed_answers_are_scored_on_the_word_they_name_through_evaluate_predictions(tmp_path):
    """Issue 17's bar: against the truth "no", "Unknown", "I cannot tell", "Yes, there is an abnormality."
    and "normal" score 0 (the substring rule found the letters "no" in them) and "There is no fracture."
    scores 1, on a data=jsonl release scored from an answer file."""
    from PIL import Image

    answers = {"q1": "Unknown", "q2": "I cannot tell", "q3": "Yes, there is an abnormality.",
               "q4": "There is no fracture.", "q5": "normal"}  # fmt: skip
    release, lines = tmp_path / "release", []
    (release / "img").mkdir(parents=True)
    for i, qid in enumerate([*answers, "t1", "t2"]):
        Image.new("L", (32, 32), color=30 * i).save(release / "img" / f"{qid}.png")
        split = "test" if qid in answers else "train"
        lines.append({"id": qid, "image": f"img/{qid}.png", "question": "Is there a fracture?", "answer": "no",
                      "answer_type": "closed", "patient_id": qid, "split": split})  # fmt: skip
    (release / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    file = tmp_path / "answers.jsonl"
    file.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in answers.items()))
    record = _evaluate(tmp_path / "out", "data=jsonl", f"data.root={release}", f"predictions={file}")
    scored = {r["id"]: r["scores"]["closed_acc"] for r in _rows(tmp_path / "out" / "predictions.jsonl")}
    assert scored == {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 1.0, "q5": 0.0}
    assert record["test"]["test/closed_acc"] == pytest.approx(0.2)
