"""Is a closed answer's confidence a probability? Expected calibration error, Brier score, a reliability
table, temperature scaling of the option log-probabilities, and Clopper-Pearson bounds.

    conf, right = closed_confidences(rows)                 # prediction rows with `option_logprobs`
    report = calibration_report(conf, right)               # {"ece", "brier", "reliability", "..._ci"}
    t = fit_temperature(val_logprobs, val_truth_index)     # minimises NLL on validation
    conf_t, _ = closed_confidences(rows, temperature=t)
    clopper_pearson_lower(10, 10, 0.95)                    # 0.7411 = 0.05 ** (1 / 10)

A closed answer's confidence is P_T(the option it names) = softmax(s / T) over the question's options, where
s(o) is the log-probability of o as a neutral answer (medvqa/inference/scoring.py). ECE uses 15 equal-mass
bins (the confidences sorted and split into bins of equal counts, so no bin is empty however the model's
confidences bunch); Brier is the mean squared gap between the confidence and the answer's 0/1 correctness
(closed_acc). Intervals are percentile bootstraps through `resampled` (the one place that chooses what is
resampled). docs/evaluation.md, "Calibration".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import beta

from medvqa.answers import option_of

N_BINS = 15
# the temperature search runs over beta = 1 / T in [1/T_MAX, 1/T_MIN]: the validation NLL is convex in beta
# (a softmax cross-entropy is convex in the scale of its logits), so a bounded 1-D search finds its minimum
T_MIN, T_MAX = 0.05, 20.0
MIN_FIT_ITEMS = 20  # fewer validation closed answers than this: no temperature is fitted (too few to trust)


def option_probs(logprobs: Mapping[str, float], temperature: float = 1.0) -> dict[str, float]:
    """softmax(s / T) over the options' log-probabilities {option: s(o)}."""
    names = list(logprobs)
    z = np.array([logprobs[o] for o in names], dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return dict(zip(names, (z / z.sum()).tolist(), strict=True))


def row_confidence(row: Mapping[str, Any], temperature: float = 1.0) -> float | None:
    """P_T(the option the row's prediction names); None for a row without option log-probabilities (an open
    question, an answer file) and for an answer that names none of its options."""
    logprobs = row.get("option_logprobs")
    if not logprobs:
        return None
    named = option_of(row["prediction"], list(logprobs))
    return option_probs(logprobs, temperature)[named] if named is not None else None


def closed_confidences(
    rows: Sequence[Mapping[str, Any]], temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every closed row that has a confidence (`row_confidence`); correct is the
    row's closed_acc (the protocol's verdict), so calibration is measured against the score reported."""
    pairs = [(row_confidence(r, temperature), float(r["scores"]["closed_acc"]))
             for r in rows if r.get("answer_type") == "closed" and "closed_acc" in r.get("scores", {})]  # fmt: skip
    kept = [(c, y) for c, y in pairs if c is not None]
    return np.array([c for c, _ in kept], dtype=np.float64), np.array([y for _, y in kept], dtype=np.float64)


def equal_mass_bins(confidence: np.ndarray, n_bins: int = N_BINS) -> list[np.ndarray]:
    """Indices of `confidence` sorted ascending (stable: ties keep row order) and split into min(n_bins, n)
    bins of sizes differing by at most one."""
    order = np.argsort(confidence, kind="stable")
    return [b for b in np.array_split(order, min(n_bins, len(order))) if len(b)]


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over equal-mass bins of (bin share) x |mean confidence - accuracy|."""
    n = len(confidence)
    bins = equal_mass_bins(confidence, n_bins)
    return float(sum(len(b) / n * abs(confidence[b].mean() - correct[b].mean()) for b in bins))


def brier(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Mean (confidence - correct)^2: the Brier score of the answer's confidence against its correctness."""
    return float(np.mean((confidence - correct) ** 2))


def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Per equal-mass bin: its confidence range, count, mean confidence, accuracy and the accuracy's exact
    (Clopper-Pearson) two-sided 95% interval."""
    table = []
    for b in equal_mass_bins(confidence, n_bins):
        k, n = int(correct[b].sum()), len(b)
        low, high = clopper_pearson(k, n, 0.95)
        table.append({"low": float(confidence[b].min()), "high": float(confidence[b].max()), "n": n,
                      "confidence": float(confidence[b].mean()), "accuracy": k / n,
                      "accuracy_low": low, "accuracy_high": high})  # fmt: skip
    return table


def resampled(n: int, statistic: Callable[[np.ndarray], float], n_boot: int, seed: int,
              clusters: Sequence[Any] | None = None, unit: str = "question") -> dict[str, Any]:  # fmt: skip
    """Percentile bootstrap 95% interval of `statistic(indices)` over items 0..n-1 (numpy PCG64(seed)):
    whole clusters (`clusters`: one id per item, eval.ci_unit's patient or image, medvqa/eval/stats.py
    `row_clusters`) drawn with replacement and their items taken together, or single items when None.
    Written here rather than with stats.bootstrap_ci because ECE, Brier and a guard's precision are not
    means of per-item scores."""
    rng = np.random.default_rng(seed)
    groups = _cluster_members(clusters, n)
    values = np.array([statistic(_draw(groups, rng)) for _ in range(n_boot)])
    # a statistic undefined on a resample (NaN: e.g. a precision with nothing answered) is left out
    low, high = np.nanpercentile(values, [2.5, 97.5]) if np.isfinite(values).any() else (math.nan, math.nan)
    return {"mean": float(statistic(np.arange(n))), "low": float(low), "high": float(high), "n": n,
            "n_boot": n_boot, "seed": seed, "confidence": 0.95, "unit": unit if clusters is not None else "question",
            "n_clusters": len(groups)}  # fmt: skip


def _cluster_members(clusters: Sequence[Any] | None, n: int) -> list[np.ndarray]:
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    members: dict[Any, list[int]] = {}
    for i, c in enumerate(clusters):
        members.setdefault(c, []).append(i)
    return [np.array(v) for v in members.values()]


def _draw(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The item indices of len(groups) clusters drawn with replacement."""
    return np.concatenate([groups[g] for g in rng.integers(0, len(groups), size=len(groups))])


def calibration_report(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    clusters: Sequence[Any] | None = None,
    unit: str = "question",
) -> dict:
    """ECE and Brier with (cluster) bootstrap intervals and the reliability table; {"n": 0} with no
    confidences. `clusters`: one id per confidence (None: questions are resampled)."""
    n = len(confidence)
    if n == 0:
        return {"n": 0}
    return {
        "n": n,
        "ece": ece(confidence, correct),
        "brier": brier(confidence, correct),
        "ece_ci": resampled(n, lambda i: ece(confidence[i], correct[i]), n_boot, seed, clusters, unit),
        "brier_ci": resampled(n, lambda i: brier(confidence[i], correct[i]), n_boot, seed, clusters, unit),
        "bins": min(N_BINS, n),
        "reliability": reliability_table(confidence, correct),
    }


def fit_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, float]], list[int]]:
    """(option log-probabilities, index of the truth's option) of every row whose truth names exactly one
    of its options: the examples a temperature is fitted on."""
    logprobs, truth = [], []
    for row in rows:
        options = row.get("option_logprobs")
        named = option_of(row["answer"], list(options)) if options else None
        if named is not None:
            logprobs.append(dict(options))
            truth.append(list(options).index(named))
    return logprobs, truth


def nll(logprobs: Sequence[Mapping[str, float]], truth: Sequence[int], temperature: float) -> float:
    """Mean negative log-likelihood of the truth's option under softmax(s / T)."""
    total = 0.0
    for s, t in zip(logprobs, truth, strict=True):
        z = np.array(list(s.values()), dtype=np.float64) / temperature
        total -= z[t] - (z.max() + math.log(np.exp(z - z.max()).sum()))
    return total / max(len(truth), 1)


def fit_temperature(logprobs: Sequence[Mapping[str, float]], truth: Sequence[int]) -> float:
    """The temperature T in [T_MIN, T_MAX] minimising `nll` (scipy's bounded Brent search over 1 / T)."""
    if not truth:
        raise ValueError("fit_temperature: no validation answers with a truth among their options")
    found = minimize_scalar(lambda b: nll(logprobs, truth, 1.0 / b), bounds=(1.0 / T_MAX, 1.0 / T_MIN),
                            method="bounded", options={"xatol": 1e-6})  # fmt: skip
    return float(1.0 / found.x)


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact lower confidence bound of a binomial proportion (k successes in n trials): the p
    with P(X >= k | p) = 1 - confidence, i.e. the Beta(k, n - k + 1) quantile; 0 when k = 0 or n = 0."""
    if n == 0 or k == 0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, k, n - k + 1))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) interval of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def temperature_fit(val_rows: Sequence[Mapping[str, Any]], min_items: int = MIN_FIT_ITEMS) -> dict[str, Any]:
    """The temperature fitted on validation rows with its record: {"temperature", "fitted", "val_items",
    "val_nll_before"/"after"}; `fitted` is False (T = 1) with fewer than `min_items` usable rows."""
    logprobs, truth = fit_rows(val_rows)
    if len(truth) < max(min_items, 1):
        return {"temperature": 1.0, "fitted": False, "val_items": len(truth),
                "reason": f"{len(truth)} validation closed answers with a truth among their options "
                          f"(at least {min_items} needed, eval.calibrate_min_items)"}  # fmt: skip
    t = fit_temperature(logprobs, truth)
    # at T_MAX the scores carry (almost) no information on val: the fit flattens every confidence toward 1/k
    bound = "max" if t >= T_MAX * 0.999 else "min" if t <= T_MIN * 1.001 else None
    return {"temperature": t, "fitted": True, "val_items": len(truth), "at_bound": bound,
            "val_nll_before": nll(logprobs, truth, 1.0), "val_nll_after": nll(logprobs, truth, t)}  # fmt: skip


def split_calibration(
    rows,
    val_rows=None,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = MIN_FIT_ITEMS,
    ci_unit: str = "question",
) -> dict:
    """metrics.json's `calibration`: the split's closed-answer ECE / Brier / reliability at T = 1
    (`before`), and with `val_rows` the temperature fitted on them, the validation ECE before / after and
    the split's `after` under it. `skipped`: closed rows without a confidence (no option named, no scores)."""
    n_closed = sum(r.get("answer_type") == "closed" for r in rows)
    conf, right = closed_confidences(rows)
    clusters, unit = confidence_clusters(rows, ci_unit)
    report = calibration_report(conf, right, n_boot, seed, clusters, unit)
    record: dict[str, Any] = {"bins": N_BINS, "binning": "equal-mass", "closed": n_closed,
                              "skipped": n_closed - len(conf), "before": report}  # fmt: skip
    if val_rows is None:
        return record
    fit = fit_on_val(val_rows, min_items)
    t_conf, t_right = closed_confidences(rows, fit["temperature"])
    return record | {"fit": fit, "after": calibration_report(t_conf, t_right, n_boot, seed, clusters, unit)}


def confidence_clusters(rows: Sequence[Mapping[str, Any]], ci_unit: str) -> tuple[list | None, str]:
    """The eval.ci_unit cluster of each row `closed_confidences` keeps (the same rows, in order), and the
    unit used; a row's confidence does not depend on the temperature being None or not, so one list serves
    the split before and after scaling."""
    from medvqa.eval.stats import row_clusters

    kept = [r for r in rows if r.get("answer_type") == "closed" and "closed_acc" in r.get("scores", {})
            and row_confidence(r, 1.0) is not None]  # fmt: skip
    return row_clusters(kept, ci_unit) if kept else (None, "question")


def fit_on_val(val_rows: Sequence[Mapping[str, Any]], min_items: int = MIN_FIT_ITEMS) -> dict[str, Any]:
    """`temperature_fit` on validation rows, with the validation ECE before and after it (what
    calibration.json holds)."""
    fit = temperature_fit(val_rows, min_items)
    v_conf, v_right = closed_confidences(val_rows)
    vt_conf, _ = closed_confidences(val_rows, fit["temperature"])
    return fit | {"val_ece_before": ece(v_conf, v_right) if len(v_conf) else None,
                  "val_ece_after": ece(vt_conf, v_right) if len(vt_conf) else None}  # fmt: skip


def calibration_line(record: Mapping[str, Any], split: str = "test") -> str:
    """The printed line: ECE (and Brier) before and, when fitted, after temperature scaling."""
    before, fit = record.get("before") or {}, record.get("fit")
    if not before.get("n"):
        line = f"{split} calibration: no closed answer names one of its options, so none has a confidence"
    else:
        line = (f"{split} closed-answer calibration ({before['n']} answers, {N_BINS} equal-mass bins): "
                f"ECE {_ci(before, 'ece')}")  # fmt: skip
    if fit is None:
        brier = f", Brier {_ci(before, 'brier')}" if before.get("n") else ""
        return line + f"{brier} (uncalibrated; eval.calibrate=true fits a temperature on val)"
    if not fit["fitted"]:
        return line + f"; no temperature fitted: {fit['reason']}"
    how = f"T={fit['temperature']:.3f}, fit on {fit['val_items']} val answers"
    how += f", at the search's {fit['at_bound']} bound" if fit.get("at_bound") else ""
    if not before.get("n"):
        return line + f"; temperature scaling {how}"
    after = record["after"]
    return (line + f" -> {_ci(after, 'ece')} after temperature scaling ({how}); Brier {before['brier']:.4f} "
            f"-> {after['brier']:.4f}")  # fmt: skip


def _ci(report: Mapping[str, Any], key: str) -> str:
    ci = report[f"{key}_ci"]
    return f"{report[key]:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"


CALIBRATION_FILE = "calibration.json"  # in the run folder: what Predictor.from_run and the app read


def read_calibration(run_dir) -> dict[str, Any] | None:
    """The run folder's calibration.json, or None when it has none."""
    import json
    from pathlib import Path

    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_calibration(run_dir, fit: Mapping[str, Any], source: str) -> None:
    """Store a temperature fit (`temperature_fit`'s record, with the validation ECE before / after) in the
    run folder; `source` says what fitted it (evaluate, app)."""
    from pathlib import Path

    from medvqa.io import atomic_write_json

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / CALIBRATION_FILE, dict(fit) | {"source": source, "split": "val"})
