"""Issue 17 §2 bar: intervals resample patients. A `data=jsonl` release of 20 test patients x 10 closed
questions, each patient all right or all wrong, scored through `python -m medvqa.evaluate predictions=`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from medvqa.evaluate import compose_evaluate, evaluate

PATIENTS, QUESTIONS = 20, 10


def write_release(root) -> list[dict]:
    """Train / val / test lines; two images per test patient (5 questions each), so image != patient."""
    (root / "scans").mkdir(parents=True)
    lines = []
    for split, n in (("train", 4), ("val", 2), ("test", PATIENTS)):
        for p in range(n):
            for image in range(2):
                path = f"scans/{split}{p}_{image}.png"
                Image.new("L", (16, 16), 40 * image + p).save(root / path)
                for q in range(QUESTIONS // 2):
                    qid = f"{split}-p{p}-i{image}-q{q}"
                    lines.append({"id": qid, "image": path, "question": f"Is there finding {q}?",
                                  "answer": "yes" if (q + image) % 2 else "no", "answer_type": "closed",
                                  "patient_id": f"{split}-p{p}", "split": split})  # fmt: skip
    (root / "release.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return [line for line in lines if line["split"] == "test"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("clustered")
    test = write_release(root / "data")
    flip = {"yes": "no", "no": "yes"}
    # even patients answer every question right, odd ones every question wrong
    answers = [{"id": line["id"], "prediction": line["answer"] if int(line["patient_id"].split("p")[1]) % 2 == 0
                else flip[line["answer"]]} for line in test]  # fmt: skip
    (root / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    return root


def score(release, tmp_path, *overrides: str) -> dict:
    args = ["data=jsonl", f"data.root={release / 'data'}", f"predictions={release / 'answers.jsonl'}",
            "eval.text_metrics=[]", "callbacks.progress_bar=null", *overrides]  # fmt: skip
    evaluate(compose_evaluate(args, tmp_path))
    return json.loads((tmp_path / "metrics.json").read_text())


def test_closed_acc_interval_resamples_patients_and_names_its_unit(release, tmp_path):
    record = score(release, tmp_path)
    ci = record["test_ci"]["closed_acc"]
    assert record["test"]["test/closed_acc"] == pytest.approx(0.5)
    assert (ci["unit"], ci["n_clusters"], ci["n"]) == ("patient", PATIENTS, PATIENTS * QUESTIONS)
    # 20 independent patients at 0.5: the normal width is 2 * 1.96 * sqrt(0.25 / 20) = 0.438
    assert ci["high"] - ci["low"] >= 0.30
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert {r["patient_id"] for r in rows} == {f"test-p{p}" for p in range(PATIENTS)}
    breakdown = json.loads((tmp_path / "breakdown.json").read_text())
    closed = breakdown["answer_type"]["closed"]["metrics"]["closed_acc"]
    assert (closed["unit"], closed["n_clusters"]) == ("patient", PATIENTS)
    assert closed["high"] - closed["low"] >= 0.30


def test_image_and_question_units_are_narrower_and_say_so(release, tmp_path):
    """The same answers resampled by image (40 clusters) and by question (200): the per-question interval
    is the overconfident one the patient unit replaces (normal width 2 * 1.96 * sqrt(0.25 / 200) = 0.139)."""
    image = score(release, tmp_path / "image", "eval.ci_unit=image")["test_ci"]["closed_acc"]
    question = score(release, tmp_path / "question", "eval.ci_unit=question")["test_ci"]["closed_acc"]
    assert (image["unit"], image["n_clusters"]) == ("image", 2 * PATIENTS)
    assert (question["unit"], question["n_clusters"]) == ("question", PATIENTS * QUESTIONS)
    assert question["high"] - question["low"] < 0.2 < image["high"] - image["low"]


def test_an_unknown_unit_is_one_error_naming_the_key(release, tmp_path):
    with pytest.raises(ValueError, match=r"eval.ci_unit=cluster: choose one of"):
        score(release, tmp_path, "eval.ci_unit=cluster")


def test_a_training_run_refuses_an_unknown_unit_before_it_trains(tmp_path):
    from medvqa.run import compose_config, train

    cfg = compose_config(["eval.ci_unit=visit"], tmp_path)
    with pytest.raises(ValueError, match=r"eval.ci_unit=visit: choose one of"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()
