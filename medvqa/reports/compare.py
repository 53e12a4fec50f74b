"""The numbers of a comparison: each headline metric per run with a cluster bootstrap 95% interval, the
paired difference against the first run with a paired cluster bootstrap interval and a cluster
permutation p-value (Holm-adjusted over every difference the table marks), and exact McNemar tests on
closed questions (which assume independent questions); all on the questions every run answered (matched
by `id`). Clusters are the patients (else images) of the first run's rows (`--ci-unit`, as eval.ci_unit).

Runs scored by different scorers or protocols (metrics.json `scorer`: `name`, `protocol`) are refused:
their numbers are not comparable. `compare` returns a plain dict (written as report.json); `to_markdown`
and `rich_tables` render it.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from medvqa.eval.breakdown import breakdown
from medvqa.eval.stats import (
    N_BOOT,
    N_PERM,
    bootstrap_ci,
    cluster_permutation_p,
    holm,
    mcnemar_exact,
    paired_bootstrap_ci,
    row_clusters,
)
from medvqa.reports.runs import RunData, RunFolderError

# headline metrics in table order; any other per-item score the rows carry (ROUGE-L, BERTScore ...) follows
HEADLINE = ("closed_acc", "closed_exact", "open_recall", "token_f1", "exact_match", "hedged")
LOWER_IS_BETTER = {"hedged"}
MCNEMAR = ("closed_acc", "closed_exact")  # 0/1 per closed question
ALPHA = 0.05


def shared_ids(runs: list[RunData]) -> list[str]:
    """Ids every run scored, in the first run's order."""
    common = set.intersection(*({str(r["id"]) for r in run.rows} for run in runs))
    if not common:
        names = ", ".join(run.name for run in runs)
        raise RunFolderError(f"runs {names} share no question id: were they scored on the same test split?")
    return [str(r["id"]) for r in runs[0].rows if str(r["id"]) in common]


def by_id(run: RunData, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = {str(r["id"]): r for r in run.rows}
    return {i: rows[i] for i in ids}


def metric_names(tables: list[dict[str, dict]]) -> list[str]:
    """Metrics every run scored per item: HEADLINE order first, then the rest sorted."""
    per_run = [
        {m for row in t.values() for m, v in row.get("scores", {}).items() if v is not None} for t in tables
    ]
    common = set.intersection(*per_run)
    return [m for m in HEADLINE if m in common] + sorted(common - set(HEADLINE))


def _scores(table: dict[str, dict], metric: str, ids: list[str]) -> list[float]:
    return [float(table[i]["scores"][metric]) for i in ids]


def scorer_of(run: RunData) -> str:
    """How a run was scored, as metrics.json `scorer` records it: "<name> protocol=<protocol>"."""
    scorer = run.metrics.get("scorer") or {}
    return f"{scorer.get('name', '(unrecorded scorer)')} protocol={scorer.get('protocol', '(unrecorded)')}"


def check_scorers(runs: list[RunData]) -> None:
    """Refuse runs scored differently: a closed_acc under LLaVA-Med's rule is not the same number."""
    first = scorer_of(runs[0])
    for run in runs[1:]:
        if scorer_of(run) != first:
            raise RunFolderError(
                f"runs {runs[0].name} ({first}) and {run.name} ({scorer_of(run)}) were scored differently; "
                "re-score one under the other's protocol: python -m medvqa.evaluate "
                f"predictions={run.path}/predictions.jsonl eval.protocol=<protocol> data=... (docs/report.md)"
            )


def compare(
    runs: list[RunData], n_boot: int = N_BOOT, seed: int = 0, unit: str = "patient"
) -> dict[str, Any]:
    """{"runs", "shared", "unit", "metrics": {metric: {"n", "runs": [interval], "diff": [None, paired
    interval...]}}, "mcnemar": {metric: [None, {"n", "b", "c", "p_value"}...]}, "breakdown": [per run]}.

    A metric is compared on the shared questions where it is defined for every run (closed_acc: the
    closed ones). `diff[k]` is mean(run k - run 0) with `p_value` (cluster sign-flip permutation) and
    `p_holm` (Holm over all metrics x runs); McNemar's b counts questions run 0 got right and run k wrong,
    c the reverse. Intervals and permutations resample `unit` clusters (patient | image | question)."""
    check_scorers(runs)
    ids = shared_ids(runs)
    tables = [by_id(run, ids) for run in runs]
    out: dict[str, Any] = {
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "label": r.label,
                "questions": len(r.rows),
                "scorer": scorer_of(r),
            }
            for r in runs
        ],
        "shared": len(ids),
        "n_boot": n_boot,
        "n_perm": N_PERM,
        "seed": seed,
        "metrics": {},
        "mcnemar": {},
    }
    for metric in metric_names(tables):
        items = [i for i in ids if all(t[i].get("scores", {}).get(metric) is not None for t in tables)]
        if not items:
            continue
        clusters, used = row_clusters([tables[0][i] for i in items], unit)
        out["unit"] = used
        values = [_scores(t, metric, items) for t in tables]
        boot = {"n_boot": n_boot, "seed": seed, "clusters": clusters, "unit": used}
        entry = {"n": len(items), "runs": [bootstrap_ci(v, **boot) for v in values]}
        entry["diff"] = [None] + [_difference(values[0], v, boot) for v in values[1:]]
        out["metrics"][metric] = entry
        if metric in MCNEMAR:
            out["mcnemar"][metric] = [None] + [mcnemar_exact(values[0], v) for v in values[1:]]
    _holm(out["metrics"])
    out["breakdown"] = [breakdown(list(t.values())) for t in tables]
    return out


def _difference(a: list[float], b: list[float], boot: dict[str, Any]) -> dict[str, Any]:
    """mean(b - a): its paired cluster bootstrap interval and its cluster permutation p-value."""
    p_value = cluster_permutation_p(a, b, boot["clusters"], seed=boot["seed"])
    return paired_bootstrap_ci(a, b, **boot) | {"p_value": p_value}


def _holm(metrics: dict[str, dict[str, Any]]) -> None:
    """Each difference's `p_holm`: Holm's adjustment over the whole family the table marks (every metric
    against every compared run), so starring many cells does not manufacture a finding."""
    cells = [d for entry in metrics.values() for d in entry["diff"] if d is not None]
    for d, adjusted in zip(cells, holm([d["p_value"] for d in cells]), strict=True):
        d["p_holm"] = adjusted


def significant(result: dict[str, Any], metric: str, k: int) -> bool:
    """Run k differs from run 0 on `metric`: the cluster permutation p-value, Holm-adjusted over every
    metric x run difference, is below 0.05 (McNemar, which assumes independent questions, is shown only)."""
    diff = result["metrics"][metric]["diff"][k]
    return diff is not None and diff["p_holm"] < ALPHA


def better(metric: str, delta: float) -> bool:
    return delta < 0 if metric in LOWER_IS_BETTER else delta > 0


def fmt_interval(entry: dict[str, Any], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(entry['mean'])} [{f.format(entry['low'])}, {f.format(entry['high'])}]"


def _diff_cell(result: dict, metric: str, k: int) -> str:
    diff = result["metrics"][metric]["diff"][k]
    mark = " *" if significant(result, metric, k) else ""
    return fmt_interval(diff, signed=True) + mark


def _mcnemar_cell(test: dict[str, Any]) -> str:
    return f"p={test['p_value']:.3g} (b={test['b']}, c={test['c']})"


def _p_cell(diff: dict[str, Any]) -> str:
    return f"p={diff['p_value']:.3g}, Holm {diff['p_holm']:.3g}"


def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(header, rows) of the metrics table and of the difference table, as text cells."""
    names = [r["name"] for r in result["runs"]]
    head = ["metric", "n", *names]
    rows = [[m, str(e["n"]), *(fmt_interval(v) for v in e["runs"])] for m, e in result["metrics"].items()]
    diff_head = ["metric", *(f"{n} - {names[0]}" for n in names[1:])]
    diff_rows = [[m, *(_diff_cell(result, m, k) for k in range(1, len(names)))] for m in result["metrics"]]
    for m, entry in result["metrics"].items():
        diff_rows.append([f"cluster permutation {m}", *(_p_cell(d) for d in entry["diff"][1:])])
    for m, tests in result["mcnemar"].items():
        diff_rows.append(
            [f"McNemar {m} (assumes independent questions)", *(_mcnemar_cell(t) for t in tests[1:])]
        )
    return head, rows, diff_head, diff_rows


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows])


def to_markdown(result: dict[str, Any]) -> str:
    head, rows, diff_head, diff_rows = table_rows(result)
    runs = "\n".join(
        f"- **{r['name']}**: {r['path']} ({r['questions']} questions)"
        + (f"; {', '.join(r['label'])}" if r["label"] else "")
        for r in result["runs"]
    )
    unit = result.get("unit", "question")
    text = (f"# Comparison of {len(result['runs'])} runs on {result['shared']} shared test questions\n\n{runs}\n\n"
            f"Scored by {result['runs'][0]['scorer']}. Mean [{unit} cluster bootstrap 95% interval], "
            "fractions:\n\n" + _markdown_table(head, rows) + "\n")  # fmt: skip
    if len(result["runs"]) > 1:
        text += (f"\nPaired difference against the first run [paired {unit} cluster bootstrap 95% interval]; "
                 f"* = significant: {unit} cluster permutation p < 0.05 after Holm's correction over all "
                 f"{_family(result)} metric x run differences. McNemar assumes independent questions and is "
                 "shown only:\n\n" + _markdown_table(diff_head, diff_rows) + "\n")  # fmt: skip
    return text


def _family(result: dict[str, Any]) -> int:
    return sum(d is not None for entry in result["metrics"].values() for d in entry["diff"])


def rich_tables(result: dict[str, Any]) -> list[Table]:
    head, rows, diff_head, diff_rows = table_rows(result)
    unit = result.get("unit", "question")
    title = f"{result['shared']} shared test questions: mean [{unit} cluster bootstrap 95% interval]"
    tables = [_rich(title, head, rows)]
    if len(result["runs"]) > 1:
        title = (f"difference against the first run (* {unit} cluster permutation p < 0.05, Holm-adjusted "
                 f"over {_family(result)} differences; McNemar assumes independent questions)")  # fmt: skip
        tables.append(_rich(title, diff_head, diff_rows))
    return tables


def _rich(title: str, head: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
