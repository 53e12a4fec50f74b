"""Other harnesses' answer files through `python -m medvqa.evaluate predictions=`: an lmms-eval log_samples
file, a MedEvalKit results.json and a VLMEvalKit prediction file (xlsx and TSV) of the same answers, each in
its own writer's layout (medvqa/eval/harness_files.py names the code), give identical metrics; evaluate's
own copies of them read back the same; `python -m medvqa.report compare` pairs them with a medvqa run."""

from __future__ import annotations

import csv
import json

import pytest
from openpyxl import Workbook

from medvqa import report
from medvqa.data.fixtures import write
from medvqa.eval.harness_files import WRITTEN
from medvqa.evaluate import compose_evaluate, evaluate, read_data
from tests.eval.protocol_data import QUICK, read_jsonl

PROTOCOL = "lmms_eval"  # every compared side under one protocol (report compare refuses mixed ones)


def _responses(samples) -> list[str]:
    """A mix of right, wrong, hedged and padded answers, a pure function of position."""
    styles = (
        lambda a: a,
        lambda a: f"{a}.",
        lambda a: "Unknown",
        lambda a: f"I think {a}",
        lambda a: f" {a.upper()} ",
    )
    return [styles[i % len(styles)](s.answer) for i, s in enumerate(samples)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The split's questions and one answer file per harness, each laid out as that harness writes it."""
    tmp = tmp_path_factory.mktemp("harness_files")
    root = write("slake", tmp / "slake")
    data = [*QUICK, "data=slake", f"data.root={root}"]
    samples = read_data(compose_evaluate(data, tmp / "setup")).splits["test"]
    texts = _responses(samples)
    qid = [s.id.rsplit("-", 1)[-1] for s in samples]
    paths = {"medvqa": tmp / "ours.jsonl", "lmms_eval": tmp / "20260101_120000_samples_slake_en.jsonl",
             "medevalkit": tmp / "results.json", "vlmevalkit_xlsx": tmp / "model_SLAKE.xlsx",
             "vlmevalkit_tsv": tmp / "model_SLAKE.tsv"}  # fmt: skip
    paths["medvqa"].write_text(
        "".join(json.dumps({"id": s.id, "prediction": t}) + "\n" for s, t in zip(samples, texts, strict=True))
    )
    # lmms-eval 0.7.3 save_results_samples: no "doc"; the SLAKE task's metric records carry the qid
    paths["lmms_eval"].write_text("".join(json.dumps(
        {"doc_id": i, "target": s.answer, "filtered_resps": t, "token_counts": [None], "doc_hash": "h",
         "input": f"{s.question}\nAnswer the question using a single word or phrase.",
         **{m: {"id": qid[i], "prediction": t, "target": s.answer, "is_correct": False}
            for m in ("slake_accuracy", "slake_closed_accuracy")}}) + "\n"
        for i, (s, t) in enumerate(zip(samples, texts, strict=True))))  # fmt: skip
    # MedEvalKit SLAKE results.json: its rows (no question id) with "response" and "correct"
    paths["medevalkit"].write_text(json.dumps([{"lang": "en", "answer_type": s.answer_type.upper(), "answer": s.answer,
                                                "question": s.question, "prompt": "p", "response": t, "correct": False}
                                               for s, t in zip(samples, texts, strict=True)], indent=4))  # fmt: skip
    # VLMEvalKit: the dataset TSV's columns (its own integer index) without image, plus prediction
    table = [["index", "question", "answer", "category", "prediction"]]
    table += [
        [100 + i, s.question, s.answer, s.question_type, t]
        for i, (s, t) in enumerate(zip(samples, texts, strict=True))
    ]
    book = Workbook()
    for values in table:
        book.active.append(values)
    book.save(paths["vlmevalkit_xlsx"])
    with paths["vlmevalkit_tsv"].open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL).writerows(table)
    return tmp, data, samples, paths


def _evaluate(tmp, data, name, path):
    out = tmp / "out" / name
    record = evaluate(compose_evaluate([*data, f"predictions={path}", f"eval.protocol={PROTOCOL}"], out))
    return out, record


@pytest.fixture(scope="module")
def scored(files):
    tmp, data, _, paths = files
    return {name: _evaluate(tmp, data, name, path) for name, path in paths.items()}


def test_every_harness_file_gives_the_same_metrics(files, scored):
    _, _, samples, _ = files
    ours = scored["medvqa"][1]
    assert ours["predictions"]["matched"] == len(samples) and ours["test"]["test/accuracy"] not in (0.0, 1.0)
    for name, (out, record) in scored.items():
        assert record["predictions"]["format"] == name.split("_xlsx")[0].split("_tsv")[0]
        assert (record["predictions"]["matched"], record["predictions"]["missing"]) == (len(samples), 0), name
        assert record["test"] == ours["test"], name
        rows = read_jsonl(out / "predictions.jsonl")
        assert [(r["id"], r["prediction"], r["scores"]) for r in rows] == [
            (r["id"], r["prediction"], r["scores"])
            for r in read_jsonl(scored["medvqa"][0] / "predictions.jsonl")
        ], name


def test_evaluate_writes_each_layout_and_reads_its_own_back(files, scored):
    tmp, data, _, _ = files
    out, record = scored["medvqa"]
    written = {name: out / file for name, file in WRITTEN.items()}
    lines = read_jsonl(written["lmms_eval"])
    assert {"doc_id", "doc", "target", "filtered_resps"} <= set(lines[0])
    items = json.loads(written["medevalkit"].read_text())
    assert {"question", "answer", "answer_type", "lang", "response"} <= set(items[0])
    with written["vlmevalkit_tsv"].open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f, delimiter="\t"))[:4] == ["index", "id", "question", "answer"]
    for name, path in written.items():
        assert _evaluate(tmp, data, f"again_{name}", path)[1]["test"] == record["test"], name


def test_a_reordered_medevalkit_file_matches_on_question_and_answer(files, scored):
    tmp, data, _, paths = files
    items = json.loads(paths["medevalkit"].read_text())
    shuffled = tmp / "shuffled_results.json"
    shuffled.write_text(json.dumps(items[::-1]))
    assert _evaluate(tmp, data, "shuffled", shuffled)[1]["test"] == scored["medvqa"][1]["test"]


def test_report_compare_pairs_them_with_a_medvqa_run(files, scored, tmp_path):
    _, _, samples, _ = files
    names = ["medvqa", "lmms_eval", "medevalkit", "vlmevalkit_xlsx"]
    out = tmp_path / "report.html"
    report.main(["compare", *(str(scored[n][0]) for n in names), "--out", str(out), "--n-boot", "200"])
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["shared"] == len(samples)
    accuracy = result["metrics"]["accuracy"]
    assert accuracy["n"] == len(samples)
    assert all(d["low"] == d["high"] == 0.0 for d in accuracy["diff"][1:])  # the same answers: no difference


def test_their_readers_read_ours(files, scored):
    """lmms-eval's own --baseline loader (installed lmms-eval) reads our log_samples file, and pandas, the
    reader VLMEvalKit's `load` uses, reads our xlsx and TSV with their columns."""
    import pandas as pd

    try:
        from lmms_eval.baselines.loader import load_baseline
    except ImportError as e:
        pytest.fail(
            f"lmms-eval is not installed ({e}); pip install --no-deps 'lmms-eval==0.7.3' (make install)"
        )
    _, _, samples, _ = files
    out = scored["medvqa"][0]
    rows = read_jsonl(out / "predictions.jsonl")
    by_doc, _ = load_baseline(str(out / WRITTEN["lmms_eval"]), "slake_en")
    assert by_doc == {
        i: float(r["prediction"].strip().upper() == r["answer"].strip().upper()) for i, r in enumerate(rows)
    }
    for name in ("vlmevalkit_xlsx", "vlmevalkit_tsv"):
        path = out / WRITTEN[name]
        table = pd.read_excel(path) if name.endswith("xlsx") else pd.read_csv(path, sep="\t")
        assert list(table.columns) == ["index", "id", "question", "answer", "answer_type", "prediction"]
        assert list(table["index"]) == list(range(len(samples))) and list(table["id"]) == [
            s.id for s in samples
        ]
        assert [str(p) for p in table["prediction"]] == [r["prediction"] for r in rows]
