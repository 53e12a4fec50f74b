"""Guard.for_run on a trained run with the real predictor: scope from the run's training questions,
thresholds calibrated on its validation answers (or fixed by guard.thresholds)."""

from __future__ import annotations

import json
import math

import pytest

from medvqa.guard import DISCLAIMER, Guard
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


def test_the_app_answers_a_file_as_predict_does(tiny_app_run, tmp_path):
    """Uploads are decoded with the run's own max_side and window: a DICOM under a window other than its
    stored one, and a PNG larger than the app's old 1024 cap, give the app the answer Predictor.answer(path)
    gives for the same file."""
    import numpy as np
    from PIL import Image

    from medvqa.app import ChatApp
    from medvqa.data.fixtures.pictures import write_dicom
    from medvqa.data.images import load_image
    from medvqa.inference import Predictor

    predictor = Predictor.from_run(tiny_app_run, device="cpu")
    predictor.max_side, predictor.window = 40, (300.0, 1500.0)  # neither the app's nor the file's default
    guard = Guard.for_run(tiny_app_run, predictor, mode="research", thresholds={"closed": 0.0, "open": -1e3})
    app = ChatApp(predictor, guard)
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (900, 1500, 3), dtype=np.uint8)).save(big)
    files = [write_dicom(tmp_path / "ct.dcm", seed=3, size=64), big]
    for path in files:
        upload = tmp_path / "upload"
        upload.write_bytes(path.read_bytes())
        state, *_ = app.upload(str(upload), app.new_state())
        expected = load_image(path, predictor.max_side, predictor.window)
        assert np.array_equal(np.asarray(state["image"]), np.asarray(expected)), path.name
        question = "Is there a lesion in this image?"
        state, *_ = app.ask(question, state)
        direct = predictor.answer(str(path), question)
        scores = state["turns"][-1]["scores"]
        assert state["turns"][-1]["raw_answer"] == direct.answer
        assert scores["confidence"] == direct.confidence and scores["mean_logprob"] == direct.mean_logprob


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
    from medvqa.evaluate import compose_evaluate, evaluate

    overrides = [f"run={tiny_app_run}", "guard=patient", "guard.thresholds={closed:0.0,open:-1000.0}",
                 "eval.text_metrics=[]"]  # fmt: skip
    record = evaluate(compose_evaluate(overrides, tmp_path))
    report = record["guard"]
    assert report["in_sample"] is False
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    # nothing with a confidence is below these thresholds; a closed answer naming no option (this 10-step
    # model's "liver" to a yes/no question) has none, and the guard abstains on it. The novelty check, fitted
    # on this run's few training images, may refer a test image (its rate is reported)
    novel = [r["guard_rule"] == "novel_image" for r in rows]
    unsure = [r["guard_confidence"] is None and not n for r, n in zip(rows, novel, strict=True)]
    assert report["questions"] == 8 and report["coverage"] == 1.0 - (sum(unsure) + sum(novel)) / 8
    assert report["novel_rate"] == sum(novel) / 8 and report["calibration"]["novelty"]["quantile"] == 0.99
    assert all(r["guard"] == "referred" for r, n in zip(rows, novel, strict=True) if n)
    assert all(
        (r["guard"], r["guard_rule"]) == ("abstained", "low_confidence")
        for r, u in zip(rows, unsure, strict=True)
        if u
    )
    assert report["shipped"]["out_of_scope"] >= 100 and report["shipped"]["refusal_rate"] >= 0.98
    assert json.loads((tmp_path / "metrics.json").read_text())["guard"]["thresholds"] == {
        "closed": 0.0,
        "open": -1000.0,
    }
    sure = [r for r, u, n in zip(rows, unsure, novel, strict=True) if not u and not n]
    assert sure and all(r["guard"] == "answered" and r["shown_text"].startswith("Answer: ") for r in sure)


def test_evaluate_guard_needs_a_run_and_a_model(tiny_app_run, tmp_path):
    from medvqa.evaluate import compose_evaluate, evaluate

    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"id": "x", "prediction": "yes"}\n')
    cfg = compose_evaluate([f"run={tiny_app_run}", "guard=patient", f"predictions={answers}", "eval.text_metrics=[]"],
                           tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="predictions="):
        evaluate(cfg)


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ([], r"guard=patient needs run="),
        (["predictions"], r"predictions="),
        (["adapter"], r"guard=patient with adapter=: .*drop adapter= or guard="),
        (["model.hidden_size=64"], r"guard=patient with model=: "),
    ],
)
def test_evaluate_guard_is_refused_before_any_model_loads(
    tiny_app_run, tmp_path, monkeypatch, extra, refused
):
    """guard='s preconditions are checked up front: the model is never built, nothing is scored. The guard
    scores the run's own model + adapter, so adapter= / another model= beside it is refused (the metrics
    and the guard figures would be two models')."""
    import medvqa.evaluate as ev

    def never(*args, **kwargs):
        raise AssertionError("a model was built or the split scored before guard='s checks")

    monkeypatch.setattr(ev, "score_model", never)
    monkeypatch.setattr(ev, "score_file", never)
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"id": "x", "prediction": "yes"}\n')
    given = {"predictions": f"predictions={answers}", "adapter": f"adapter={tiny_app_run / 'adapter'}"}
    overrides = ["guard=patient", "eval.text_metrics=[]", *(given.get(e, e) for e in extra)]
    if extra:
        overrides.append(f"run={tiny_app_run}")
    with pytest.raises(ValueError, match=refused):
        ev.evaluate(ev.compose_evaluate(overrides, tmp_path))


def test_evaluate_guard_on_the_validation_split_warns_it_is_in_sample(tiny_app_run, tmp_path, caplog):
    from medvqa.evaluate import compose_evaluate
    from medvqa.guard.evaluation import check_guard

    cfg = compose_evaluate([f"run={tiny_app_run}", "guard=patient", "split=val"], tmp_path)
    with caplog.at_level("WARNING", logger="medvqa"):
        check_guard(cfg)
    assert "in-sample" in caplog.text
    caplog.clear()
    check_guard(compose_evaluate([f"run={tiny_app_run}", "guard=patient"], tmp_path))
    assert "in-sample" not in caplog.text


def test_predict_writes_the_guard_on_every_line(tiny_app_run, scan_png, tmp_path, capsys):
    """python -m medvqa.predict run=... inputs=... guard=patient: `guard` and `shown_text` on every line; an
    out-of-scope question is never answered (answer null), an in-scope one is."""
    from medvqa.predict import answer, check_modes
    from tests.inference.conftest import predict_cfg, write_jsonl

    inputs = write_jsonl(tmp_path / "q.jsonl", [{"image": scan_png.name, "question": q, "id": str(i)} for i, q in
                         enumerate(["Is there a lesion in this image?", "Do I have cancer?", "Which organ is shown?"])])  # fmt: skip
    (tmp_path / scan_png.name).write_bytes(scan_png.read_bytes())
    overrides = [
        f"run={tiny_app_run}",
        f"inputs={inputs}",
        "guard=patient",
        "guard.thresholds={closed:0.0,open:-1000.0}",
    ]
    cfg = predict_cfg(*overrides)
    check_modes(cfg, overrides)
    rows = answer(cfg, tmp_path)
    assert [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()] == rows
    # the closed question: answered, unless this 10-step model's answer names neither yes nor no (no
    # confidence, so the guard abstains on it, docs/predict.md)
    first = "abstained" if rows[0]["guard_confidence"] is None else "answered"
    assert [r["guard"] for r in rows] == [first, "referred", "answered"]
    assert rows[1]["answer"] is None and "doctor" in rows[1]["shown_text"]
    assert rows[2]["answer"] and rows[2]["shown_text"] == f"Answer: {rows[2]['answer']}\n\n{DISCLAIMER}"


def test_predict_image_mode_prints_the_decision(tiny_app_run, scan_png, tmp_path, capsys):
    from medvqa.predict import answer
    from tests.inference.conftest import predict_cfg

    cfg = predict_cfg(f"run={tiny_app_run}", f"image={scan_png}", "question=Am I going to die?", "guard=patient",
                      "guard.thresholds={closed:0.0,open:-1000.0}")  # fmt: skip
    answer(cfg, tmp_path)
    assert "[referred]" in capsys.readouterr().out


def test_evaluate_guard_decides_on_the_scored_generation_and_prints_precision_with_its_interval(
    tiny_app_run, tmp_path, monkeypatch, capsys
):
    """One model pass: the guard decides on the rows the evaluation scored (their option log-probabilities),
    never asking the Predictor again; its test coverage and precision come with intervals."""
    from medvqa.eval.calibration import row_confidence
    from medvqa.evaluate import compose_evaluate, evaluate
    from medvqa.inference.predictor import Predictor

    def never(*args, **kwargs):
        raise AssertionError("evaluate guard= generated an answer a second time through the Predictor")

    monkeypatch.setattr(Predictor, "answer_many", never)
    overrides = [f"run={tiny_app_run}", "guard=patient", "guard.thresholds={closed:0.0,open:-1000.0}",
                 "eval.text_metrics=[]", "eval.calibrate=false"]  # fmt: skip
    report = evaluate(compose_evaluate(overrides, tmp_path))["guard"]
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        if row["answer_type"] == "closed" and row.get("option_logprobs"):
            assert row["guard_confidence"] == row_confidence(row)  # the scored generation's own confidence
    ci = report["accuracy_answered_ci"]
    assert ci["low"] <= report["accuracy_answered"] <= ci["high"] and "coverage_ci" in report
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("guard=patient"))
    assert (
        f"precision on the answered share {report['accuracy_answered']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
        in line
    )
