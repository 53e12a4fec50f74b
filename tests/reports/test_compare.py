"""`python -m medvqa.report compare`: paired differences and McNemar tests on the shared questions, checked
against numbers worked by hand on hand-built runs."""

from __future__ import annotations

import json

import pytest
from conftest import make_run

from medvqa.eval.stats import paired_bootstrap_ci
from medvqa.report import main as report_main
from medvqa.reports import write_report
from medvqa.reports.compare import significant
from medvqa.reports.runs import RunFolderError, differing_keys, label_runs, load_run

A = [1] * 12 + [0] * 8
B = [1] * 7 + [0] * 5 + [1] + [0] * 7  # vs A: 5 only-A-right (b), 1 only-B-right (c)
C = [1] * 20  # vs A: b = 0, c = 8


@pytest.fixture
def runs(tmp_path):
    a = make_run(tmp_path / "a", A, [1.0, 1.0, 0.5, 0.0])
    # B lists its rows in another order and scored 3 questions A did not: pairing must go by id
    order = list(range(24))[::-1]
    b = make_run(tmp_path / "b", B, [1.0, 0.5, 0.5, 1.0], precision="16-mixed", order=order, extra_ids=3)
    c = make_run(tmp_path / "c", C, [1.0, 1.0, 0.5, 0.0], precision="bf16-mixed")
    return a, b, c


def test_paired_differences_and_mcnemar_match_the_hand_counts(runs, tmp_path):
    result = write_report(list(runs), tmp_path / "r.html", n_boot=500)
    assert result["shared"] == 24 and [r["questions"] for r in result["runs"]] == [24, 27, 24]
    closed = result["metrics"]["closed_acc"]
    assert closed["n"] == 20 and [r["mean"] for r in closed["runs"]] == pytest.approx([0.6, 0.4, 1.0])
    assert closed["diff"][0] is None
    assert closed["diff"][1]["mean"] == pytest.approx(-0.2) and closed["diff"][2]["mean"] == pytest.approx(
        0.4
    )
    # exact McNemar: B 5 vs 1 discordant -> 2 (C(6,0) + C(6,1)) / 2^6; C 0 vs 8 -> 2 / 2^8
    assert result["mcnemar"]["closed_acc"][1] == {"n": 20, "b": 5, "c": 1, "p_value": 14 / 64}
    assert result["mcnemar"]["closed_acc"][2] == {"n": 20, "b": 0, "c": 8, "p_value": 2 / 256}
    # the interval is the paired bootstrap of the id-aligned per-item scores, in A's order (rows without
    # patient or image: every question its own cluster)
    interval = paired_bootstrap_ci(A, B, n_boot=500, seed=0)
    assert {k: closed["diff"][1][k] for k in interval} == interval and interval["unit"] == "question"
    assert closed["diff"][1]["low"] <= -0.2 <= closed["diff"][1]["high"]
    opened = result["metrics"]["open_recall"]
    assert opened["n"] == 4 and opened["diff"][1]["mean"] == pytest.approx((3.0 - 2.5) / 4)
    # the sign-flip permutation p of C's 8 one-sided discordant questions is 2 / 2^8 as McNemar's, but Holm
    # over the table's 12 metric x run differences multiplies the smallest by 12: no star
    assert closed["diff"][2]["p_value"] == pytest.approx(2 / 256, abs=0.002)
    assert closed["diff"][2]["p_holm"] == pytest.approx(12 * closed["diff"][2]["p_value"])
    assert not significant(result, "closed_acc", 2) and not significant(result, "closed_acc", 1)


def test_a_large_difference_survives_holm_and_clusters_decide_significance(tmp_path, image_fields):
    """60 closed questions, C right on all, A on none: p = 1/10001 before Holm, ~0.001 after, a star. The
    same answers on 3 patients (20 questions each) are 3 observations: p >= 2/8 however many questions."""
    a, c = make_run(tmp_path / "a", [0] * 60), make_run(tmp_path / "c", [1] * 60)
    result = write_report([a, c], tmp_path / "r.html", n_boot=200)
    assert result["unit"] == "question" and significant(result, "closed_acc", 1)
    patients = [{"image": f"x{i}.png", "patient_id": f"p{i // 20}"} for i in range(60)]
    a = make_run(tmp_path / "pa", [0] * 60, images=patients)
    c = make_run(tmp_path / "pc", [1] * 60, images=patients)
    clustered = write_report([a, c], tmp_path / "p.html", n_boot=200)
    diff = clustered["metrics"]["closed_acc"]["diff"][1]
    assert (clustered["unit"], diff["n_clusters"]) == ("patient", 3) and diff["p_value"] > 0.2
    assert clustered["mcnemar"]["closed_acc"][1]["p_value"] < 1e-15  # the test that assumes independence
    assert not significant(clustered, "closed_acc", 1)
    by_image = write_report([a, c], tmp_path / "i.html", n_boot=200, unit="image")
    assert by_image["metrics"]["closed_acc"]["diff"][1]["n_clusters"] == 60


def test_runs_scored_by_different_protocols_are_refused(tmp_path, capsys):
    a, b = make_run(tmp_path / "a", A), make_run(tmp_path / "b", B)
    for path, protocol in ((a, "medvqa"), (b, "llava_med")):
        metrics = json.loads((path / "metrics.json").read_text())
        metrics["scorer"] = {"name": "medvqa-vqa-v1", "protocol": protocol}
        (path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit):
        report_main(["compare", str(a), str(b), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and len(err.splitlines()) == 1
    assert "medvqa-vqa-v1 protocol=medvqa" in err and "medvqa-vqa-v1 protocol=llava_med" in err


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    a = make_run(tmp_path / "a", A, [1.0, 0.0])
    b = make_run(tmp_path / "b", A, [1.0, 0.0])
    result = write_report([a, b], tmp_path / "r.html", n_boot=200)
    for entry in result["metrics"].values():
        assert {k: entry["diff"][1][k] for k in ("mean", "low", "high")} == {
            "mean": 0.0,
            "low": 0.0,
            "high": 0.0,
        }
    assert result["mcnemar"]["closed_acc"][1]["p_value"] == 1.0


def test_a_single_run_gets_its_intervals_and_no_differences(tmp_path):
    result = write_report([make_run(tmp_path / "a", A, [1.0])], tmp_path / "r.html", n_boot=200)
    closed = result["metrics"]["closed_acc"]
    assert closed["diff"] == [None] and closed["runs"][0]["low"] < 0.6 < closed["runs"][0]["high"]


def test_labels_are_the_differing_config_keys_not_the_output_paths(runs):
    loaded = [load_run(p) for p in runs]
    assert differing_keys([r.config for r in loaded]) == ["trainer.precision"]
    label_runs(loaded)
    assert [r.label for r in loaded] == [["trainer.precision=32-true"], ["trainer.precision=16-mixed"],
                                         ["trainer.precision=bf16-mixed"]]  # fmt: skip


def test_different_models_are_labelled_by_their_model_keys(tmp_path):
    names = ["qwen2_vl_2b", "qwen2_vl_7b", "paligemma_3b"]
    loaded = [load_run(make_run(tmp_path / n, A, model=n)) for n in names]
    label_runs(loaded)
    assert [r.label for r in loaded] == [[f"model.name={n}"] for n in names]


def test_runs_sharing_no_question_are_refused(tmp_path):
    a = make_run(tmp_path / "a", A)
    b = make_run(tmp_path / "b", [], extra_ids=4)
    with pytest.raises(RunFolderError, match="share no question id"):
        write_report([a, b], tmp_path / "r.html")


def test_cli_prints_the_tables_and_writes_html_md_json(runs, tmp_path, capsys):
    out = tmp_path / "out" / "cmp.html"
    report_main(
        ["compare", *map(str, runs), "--out", str(out), "--names", "fp32,fp16,bf16", "--n-boot", "200"]
    )
    printed = capsys.readouterr().out
    assert "fp16 - fp32" in printed and "p=0.219 (b=5, c=1)" in printed and "p=0.00781 (b=0, c=8)" in printed
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in saved["runs"]] == ["fp32", "fp16", "bf16"]
    markdown = out.with_suffix(".md").read_text()
    assert "| closed_acc | 20 | 0.600 [" in markdown and "+0.400 [" in markdown
    assert "after Holm's correction over all 12 metric x run differences" in markdown
    assert "McNemar closed_acc (assumes independent questions)" in markdown
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "{a}", "{a}/missing"], "missing: no such run folder"),
        (["compare", "{a}", "{a}", "--names", "x"], "--names gives 1 names for 2 runs"),
        (["compare", "{empty}"], "holds no predictions.jsonl"),
    ],
)
def test_cli_mistakes_are_one_line_errors(args, message, tmp_path, capsys):
    a = make_run(tmp_path / "a", A)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        report_main(
            [x.format(a=a, empty=tmp_path / "empty") for x in args] + ["--out", str(tmp_path / "r.html")]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and "Traceback" not in err


def test_a_pipeline_folder_stands_for_its_last_stage(tmp_path):
    make_run(tmp_path / "pipe" / "stages" / "1_easy", A)
    make_run(tmp_path / "pipe" / "stages" / "2_hard", C)
    stages = [{"name": "easy", "dir": "stages/1_easy"}, {"name": "hard", "dir": "stages/2_hard"}]
    (tmp_path / "pipe" / "summary.json").write_text(json.dumps({"stages": stages}))
    result = write_report([tmp_path / "pipe", make_run(tmp_path / "b", A)], tmp_path / "r.html", n_boot=100)
    assert result["runs"][0]["path"].endswith("stages/2_hard") and result["runs"][0]["name"] == "pipe"
    assert result["metrics"]["closed_acc"]["runs"][0]["mean"] == 1.0
