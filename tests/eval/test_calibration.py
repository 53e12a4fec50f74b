"""Calibration of closed-answer confidence against numbers worked by hand: ECE over equal-mass bins, Brier,
the reliability table, temperature scaling against a case with a known optimum, Clopper-Pearson bounds
against known values and against the binomial tail they invert."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medvqa.eval.calibration import (
    brier,
    calibration_line,
    clopper_pearson,
    clopper_pearson_lower,
    closed_confidences,
    ece,
    equal_mass_bins,
    fit_temperature,
    nll,
    option_probs,
    reliability_table,
    row_confidence,
    split_calibration,
    temperature_fit,
)

CONF = np.array([0.9, 0.8, 0.7, 0.6])
RIGHT = np.array([1.0, 0.0, 1.0, 1.0])


def test_ece_on_hand_numbers():
    # two equal-mass bins: {0.6, 0.7} all right (gap |0.65 - 1| = 0.35), {0.8, 0.9} half right (|0.85 - 0.5|)
    assert ece(CONF, RIGHT, n_bins=2) == pytest.approx(0.35)
    # as many bins as items: the mean |confidence - correct| = (0.1 + 0.8 + 0.3 + 0.4) / 4
    assert ece(CONF, RIGHT) == pytest.approx(0.4)
    # a perfectly calibrated bin has no error: 0.75 confidence, 3 of 4 right
    assert ece(np.full(4, 0.75), RIGHT, n_bins=1) == pytest.approx(0.0)


def test_bins_are_equal_mass_and_cover_every_item():
    conf = np.array([0.99] * 20 + [0.5] * 10)  # bunched confidences: equal-width bins would leave most empty
    bins = equal_mass_bins(conf)
    assert len(bins) == 15 and {len(b) for b in bins} == {2}
    assert sorted(np.concatenate(bins).tolist()) == list(range(30))


def test_brier_on_hand_numbers():
    assert brier(CONF, RIGHT) == pytest.approx((0.01 + 0.64 + 0.09 + 0.16) / 4)


def test_reliability_table_rows():
    table = reliability_table(CONF, RIGHT, n_bins=2)
    assert [(r["n"], r["confidence"], r["accuracy"]) for r in table] == [
        (2, pytest.approx(0.65), 1.0),
        (2, pytest.approx(0.85), 0.5),
    ]
    assert table[0]["accuracy_low"] == pytest.approx(0.025**0.5)  # 2 of 2: exact two-sided 95% lower bound
    assert table[1]["accuracy_low"] < 0.5 < table[1]["accuracy_high"]


def test_temperature_fit_finds_the_known_optimum():
    # every item has the margin s(yes) - s(no) = 2 and the truth is yes in 3 of 4: the NLL is least where
    # sigmoid(2 / T) = 3/4, i.e. T = 2 / ln 3
    logprobs = [{"yes": 0.0, "no": -2.0}] * 4
    truth = [0, 0, 0, 1]
    t = fit_temperature(logprobs, truth)
    assert t == pytest.approx(2 / math.log(3), rel=1e-4)
    assert nll(logprobs, truth, t) < nll(logprobs, truth, 1.0)
    assert option_probs(logprobs[0], t)["yes"] == pytest.approx(0.75, abs=1e-5)
    # scores that say nothing (truth yes in half the items): the NLL is least at infinite T, the search's bound
    flat = temperature_fit(
        [{"answer": a, "option_logprobs": {"yes": 0.0, "no": -2.0}} for a in ["yes", "no"] * 10]
    )
    assert (
        flat["fitted"] and flat["temperature"] == pytest.approx(20.0, rel=1e-3) and flat["at_bound"] == "max"
    )


def test_temperature_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 3, size=4000)
    truth = (rng.random(4000) >= 1 / (1 + np.exp(-margins / 2.5))).astype(
        int
    )  # P(option 0) = sigmoid(m / 2.5)
    logprobs = [{"a": float(m), "b": 0.0} for m in margins]
    assert fit_temperature(logprobs, truth.tolist()) == pytest.approx(2.5, rel=0.1)


def rows_of(conf_margins, names_truth, right):
    """Closed prediction rows: option log-probs {yes: m, no: 0}, the prediction naming yes, correct or not."""
    return [{"answer_type": "closed", "prediction": "yes", "answer": "yes" if ok else "no",
             "option_logprobs": {"yes": m, "no": 0.0}, "scores": {"closed_acc": float(ok)}}
            for m, ok in zip(conf_margins, right, strict=True)]  # fmt: skip


def test_rows_give_the_named_options_probability_and_skip_those_without_one():
    rows = rows_of([math.log(3)], None, [True])
    assert row_confidence(rows[0]) == pytest.approx(0.75)
    rows.append({"answer_type": "closed", "prediction": "maybe", "answer": "no",
                 "option_logprobs": {"yes": 0.0, "no": 0.0}, "scores": {"closed_acc": 0.0}})  # fmt: skip
    rows.append(
        {"answer_type": "open", "prediction": "liver", "answer": "liver", "scores": {"open_recall": 1.0}}
    )
    conf, right = closed_confidences(rows)
    assert conf.tolist() == pytest.approx([0.75]) and right.tolist() == [1.0]
    record = split_calibration(rows)
    assert record["closed"] == 2 and record["skipped"] == 1 and record["before"]["n"] == 1


def test_an_overconfident_model_is_cooled_and_its_ece_falls():
    rng = np.random.default_rng(1)
    margins = rng.normal(0, 4, size=600)  # sure of itself ...
    right = rng.random(600) < 1 / (1 + np.exp(-np.abs(margins) / 4))  # ... but right as if T were 4
    signed = np.where(margins > 0, margins, -margins)  # the prediction names yes: its margin is positive
    val, test = rows_of(signed[:300], None, right[:300]), rows_of(signed[300:], None, right[300:])
    record = split_calibration(test, val, n_boot=200)
    assert record["fit"]["fitted"] and record["fit"]["temperature"] > 2
    assert record["after"]["ece"] < record["before"]["ece"]
    assert record["fit"]["val_ece_after"] < record["fit"]["val_ece_before"]
    ci = record["after"]["ece_ci"]
    # (ECE is biased upward, so its resamples can all lie above the estimate: only the order is checked)
    assert 0 <= ci["low"] <= ci["high"] and ci["n"] == 300 and ci["unit"] == "question"
    line = calibration_line(record)
    assert (
        "ECE" in line
        and "after temperature scaling" in line
        and f"T={record['fit']['temperature']:.3f}" in line
    )


def test_too_few_validation_answers_fit_no_temperature():
    fit = temperature_fit(rows_of([1.0] * 5, None, [True] * 5))
    assert not fit["fitted"] and fit["temperature"] == 1.0 and "at least 20" in fit["reason"]


def test_clopper_pearson_known_values():
    assert clopper_pearson_lower(10, 10, 0.95) == pytest.approx(0.05 ** (1 / 10), abs=1e-12)  # 0.7411
    assert clopper_pearson_lower(10, 10, 0.95) == pytest.approx(0.7411, abs=1e-4)
    assert clopper_pearson_lower(59, 59, 0.95) > 0.95 > clopper_pearson_lower(58, 58, 0.95)
    assert clopper_pearson_lower(0, 10) == 0.0 and clopper_pearson_lower(0, 0) == 0.0
    low, high = clopper_pearson(5, 10, 0.95)  # the textbook interval of 5 in 10
    assert (round(low, 4), round(high, 4)) == (0.1871, 0.8129)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


@pytest.mark.parametrize(("k", "n"), [(7, 20), (1, 3), (48, 50)])
def test_the_lower_bound_inverts_the_binomial_tail(k, n):
    p = clopper_pearson_lower(k, n, 0.95)
    tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))  # P(X >= k | p)
    assert tail == pytest.approx(0.05, abs=1e-9)


def test_evaluate_prints_test_ece_before_and_after_and_stores_the_temperature_in_the_run(
    tiny_run_dir, tmp_path, capsys
):
    """python -m medvqa.evaluate run=<run> (eval.calibrate=true): metrics.json's `calibration` holds the test
    ECE / Brier / reliability before and after a temperature fitted on val, the printed line says both, and
    the run folder's calibration.json is what the Predictor (app, predict) then applies."""
    import json
    import shutil

    from medvqa.evaluate import compose_evaluate, evaluate
    from medvqa.inference import Predictor

    run = tmp_path / "run"  # a copy: the session's tiny run is shared read-only
    shutil.copytree(tiny_run_dir, run)
    overrides = [f"run={run}", "eval.text_metrics=[]", "callbacks.progress_bar=null",
                 "data.limit={train:24,val:64,test:8}", "eval.calibrate_min_items=10"]  # its whole val split  # fmt: skip
    record = evaluate(compose_evaluate(overrides, tmp_path / "out"))
    calibration = record["calibration"]
    fit = calibration["fit"]
    assert fit["fitted"] and fit["val_items"] >= 10 and fit["val_nll_after"] <= fit["val_nll_before"] + 1e-9
    stored = json.loads((run / "calibration.json").read_text())
    assert stored["temperature"] == fit["temperature"] and stored["source"] == "evaluate"
    before, after = calibration["before"], calibration["after"]
    assert before["n"] == after["n"] and sum(b["n"] for b in after.get("reliability", [])) == after["n"]
    printed = capsys.readouterr().out
    assert f"T={fit['temperature']:.3f}, fit on {fit['val_items']} val answers" in printed
    if before["n"]:  # (a 10-step model's closed answers may name no option, and so have no confidence)
        assert f"ECE {before['ece']:.4f}" in printed and f"-> {after['ece']:.4f}" in printed
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["calibration"]["fit"] == fit
    predictor = Predictor.from_run(run)
    assert predictor.temperature == fit["temperature"]


def test_calibration_and_guard_intervals_resample_whole_clusters():
    """ECE / Brier / the guard's precision are not means of per-item scores, so `resampled` draws whole
    clusters itself: with 10 images of 10 questions each all right or all wrong, the clustered interval of
    the accuracy is far wider than the per-question one, and names its unit."""
    import numpy as np

    from medvqa.eval.calibration import resampled

    correct = np.repeat([1.0, 0.0] * 5, 10)
    clusters = [f"img{i // 10}" for i in range(100)]
    by_question = resampled(100, lambda i: float(correct[i].mean()), 500, 0)
    by_image = resampled(100, lambda i: float(correct[i].mean()), 500, 0, clusters, "image")
    assert by_image["unit"] == "image" and by_image["n_clusters"] == 10 and by_question["unit"] == "question"
    assert by_image["high"] - by_image["low"] > 2 * (by_question["high"] - by_question["low"])
