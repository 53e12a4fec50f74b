"""Guard.for_run on a trained run with the real predictor: scope from the run's training questions,
thresholds calibrated on its validation answers (or fixed by guard.thresholds)."""

from __future__ import annotations

import math

import pytest

from medvqa.guard import Guard
from medvqa.guard.abstain import score_of


@pytest.fixture(scope="module")
def predictor(tiny_app_run):
    from medvqa.inference import Predictor

    return Predictor.from_run(tiny_app_run, device="cpu")


def test_for_run_calibrates_on_the_validation_split(tiny_app_run, predictor):
    guard = Guard.for_run(tiny_app_run, predictor, mode="patient", target_precision=0.5)
    info = guard.calibration
    assert info["items"] == 8  # tiny_run keeps 8 validation questions
    assert info["closed"]["items"] + info["open"]["items"] == 8
    assert "Is there a lesion in this image?" in guard.scope.questions
    for kind in ("closed", "open"):
        threshold = guard.thresholds[kind]
        assert math.isinf(threshold) or info[kind]["answered"] > 0
    # a threshold is one of the calibration scores (or inf): recompute it from the same answers
    from medvqa.guard.calibration import calibrate_run, run_questions

    datamodule, _ = run_questions(tiny_app_run)
    again, _ = calibrate_run(datamodule, predictor, 0.5, None)
    assert again == guard.thresholds


def test_fixed_thresholds_skip_the_calibration(tiny_app_run, predictor):
    guard = Guard.for_run(tiny_app_run, predictor, thresholds={"closed": 0.3})
    assert guard.thresholds == {"closed": 0.3, "open": math.inf} and guard.calibration["fixed"]
    with pytest.raises(ValueError, match="guard.thresholds="):
        Guard.for_run(tiny_app_run, predictor, thresholds={"yes_no": 0.3})


def test_research_and_patient_agree_on_decisions(tiny_app_run, predictor, scan_png):
    patient = Guard.for_run(tiny_app_run, predictor, thresholds={"closed": 0.0, "open": -1000.0})
    research = Guard("research", patient.scope, patient.thresholds)
    ask = lambda q: predictor.answer(str(scan_png), q)  # noqa: E731
    for question in ("Is there a lesion in this image?", "Do I have cancer?"):
        a, b = patient.decide(question, ask), research.decide(question, ask)
        assert a.guard == b.guard and a.rule == b.rule
        assert b.answer is not None and b.shown_text == b.answer.answer
        assert score_of(b.answer) == b.confidence


def test_evaluate_reports_the_guard(tiny_app_run, tmp_path):
    """python -m medvqa.evaluate run=<run> guard=patient: coverage, accuracy on the answered share beside the
    unguarded accuracy of the same answers, the shipped set's refusal rate, and each row's decision."""
    import json

    from medvqa.evaluate import compose_evaluate, evaluate

    overrides = [f"run={tiny_app_run}", "guard=patient", "guard.thresholds={closed:0.0,open:-1000.0}",
                 "eval.text_metrics=[]"]  # fmt: skip
    record = evaluate(compose_evaluate(overrides, tmp_path))
    report = record["guard"]
    assert report["questions"] == 8 and report["coverage"] == 1.0  # nothing is below these thresholds
    assert report["accuracy_answered"] == report["accuracy_unguarded"]
    assert report["shipped"]["out_of_scope"] >= 100 and report["shipped"]["refusal_rate"] >= 0.98
    assert json.loads((tmp_path / "metrics.json").read_text())["guard"]["thresholds"] == {
        "closed": 0.0,
        "open": -1000.0,
    }
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert all(r["guard"] == "answered" and r["shown_text"].startswith("Answer: ") for r in rows)


def test_evaluate_guard_needs_a_run_and_a_model(tiny_app_run, tmp_path):
    from medvqa.evaluate import compose_evaluate, evaluate

    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"id": "x", "prediction": "yes"}\n')
    cfg = compose_evaluate([f"run={tiny_app_run}", "guard=patient", f"predictions={answers}", "eval.text_metrics=[]"],
                           tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="predictions="):
        evaluate(cfg)
