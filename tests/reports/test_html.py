"""The HTML report's content, parsed: self-contained, one column per run, breakdowns with counts, the
gallery (disagreements first, answers coloured right/wrong, thumbnails from files, parquet rows, zip
members and DICOM)."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from conftest import make_run
from PIL import Image

from medvqa.reports import write_report
from medvqa.reports.gallery import THUMB_SIDE

A = [1] * 12 + [0] * 8
B = [1] * 7 + [0] * 5 + [1] + [0] * 7
C = [1] * 20


VOID = {"img", "br", "meta", "link", "input", "hr"}


class Elements(HTMLParser):
    """Every element as (tag, attrs dict, the text pieces inside it), in document order."""

    def __init__(self, text: str):
        super().__init__()
        self.found: list[tuple[str, dict, list[str]]] = []
        self.open: list[tuple[str, dict, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = (tag, dict(attrs), [])
        self.found.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for element in self.open:
            if data.strip():
                element[2].append(data.strip())

    def all(self, tag: str, cls: str | None = None) -> list[tuple[str, dict, list[str]]]:
        return [
            e for e in self.found if e[0] == tag and (cls is None or cls in e[1].get("class", "").split())
        ]


@pytest.fixture
def page(tmp_path, image_fields):
    pictures = image_fields(24)
    a = make_run(tmp_path / "fp32", A, [1.0, 1.0, 0.5, 0.0], images=pictures)
    b = make_run(tmp_path / "fp16", B, [1.0, 0.5, 0.5, 1.0], precision="16-mixed", images=pictures)
    c = make_run(tmp_path / "bf16", C, [1.0, 1.0, 0.5, 0.0], precision="bf16-mixed", images=pictures)
    out = tmp_path / "report.html"
    write_report([a, b, c], out, n_boot=300, gallery=10)
    return out, Elements(out.read_text())


def test_the_file_is_self_contained(page):
    out, html = page
    text = out.read_text()
    assert not html.all("script") and not html.all("iframe")
    for tag, attrs, _ in html.found:
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith("data:"), f"<{tag} {key}={attrs[key][:60]}> is not embedded"
    assert "http://" not in text and "https://" not in text and "url(" not in text
    # small enough to mail around inside a hospital: thumbnails, not full images
    assert out.stat().st_size < 1_500_000


def test_one_column_per_run_labelled_by_its_differing_config_key(page):
    _, html = page
    headers = html.all("th", "run-col")
    assert [h[2][0] for h in headers] == ["fp32", "fp16", "bf16"]
    assert [h[2][1] for h in headers] == ["trainer.precision=32-true", "trainer.precision=16-mixed",
                                          "trainer.precision=bf16-mixed"]  # fmt: skip


def test_significance_is_marked_against_the_first_run(page):
    out, _ = page
    text = out.read_text()
    # bf16's +0.400 on closed_acc has p = 2/256 unadjusted (as McNemar's), but Holm over the table's 12
    # metric x run differences leaves it unmarked; fp16's drop (-0.200, p = 0.22) too
    assert 'class="delta ns"> +0.400' in text and 'class="delta ns"> -0.200' in text
    assert "after Holm's correction over all 12 metric × run differences" in text
    assert "p = 0.219" in text and "p = 0.00781" in text and "McNemar assumes independent questions" in text


def test_a_difference_that_survives_holm_is_marked_green(tmp_path):
    a, c = make_run(tmp_path / "a", [0] * 60), make_run(tmp_path / "c", [1] * 60)
    write_report([a, c], tmp_path / "r.html", n_boot=200)
    assert 'class="delta good">▲ +1.000' in (tmp_path / "r.html").read_text()


def test_breakdowns_list_every_grouping_with_counts(page):
    _, html = page
    tables = {t[1]["data-key"] for t in html.all("table", "cat")}
    # source has one category (synthetic) and says nothing the headline does not: no section
    assert tables == {"question_type", "organ", "modality", "answer_type"}
    rows = [e[2][:3] for e in html.all("tr")]
    assert ["closed", "20", "20 / 0"] in rows and ["open", "4", "0 / 4"] in rows
    closed = next(e[2] for e in html.all("tr") if e[2][:2] == ["closed", "20"])
    opened = next(e[2] for e in html.all("tr") if e[2][:2] == ["open", "4"])
    # per run (fp32, fp16, bf16): closed_acc, open_recall; open recalls (1+1+.5+0)/4 and (1+.5+.5+1)/4
    assert closed[3:] == ["0.600", "–", "0.400", "–", "1.000", "–"]
    assert opened[3:] == ["–", "0.625", "–", "0.750", "–", "0.625"]
    # question types largest first, counted by hand from the fixture's i % 3 cycling (open rows shift by 1)
    i = rows.index(["POS", "9", "7 / 2"])
    assert rows[i : i + 3] == [["POS", "9", "7 / 2"], ["PRES", "8", "7 / 1"], ["SIZE", "7", "6 / 1"]]
    # a bar chart per grouping, the metric bars and the training curves: all embedded PNGs
    charts = [e for e in html.all("img", "chart")]
    assert len(charts) == 1 + 4 + 1 and all(c[1]["src"].startswith("data:image/png;base64,") for c in charts)


def test_gallery_puts_disagreements_first_and_colours_each_answer(page):
    _, html = page
    items = html.all("div", "item")
    # 15 questions have differing verdicts (closed 7..19, open 1 and 3); the first 10, in fp32's order
    assert [e[1]["data-id"] for e in items] == [f"c{i}" for i in range(7, 17)]
    assert all("disagree" in e[1]["class"].split() for e in items)
    verdicts = [e[1]["class"].split()[1] for e in html.all("div", "ans")]
    per_item = [verdicts[k : k + 3] for k in range(0, len(verdicts), 3)]
    assert per_item[0] == ["right", "wrong", "right"]  # c7: fp32 right, fp16 wrong, bf16 right
    assert per_item[5] == ["wrong", "right", "right"]  # c12: only fp16 of fp32/fp16 right
    assert per_item[6] == ["wrong", "wrong", "right"]  # c13


def test_open_answers_partly_right_are_their_own_colour(tmp_path):
    a = make_run(tmp_path / "a", [], [0.5, 1.0])
    b = make_run(tmp_path / "b", [], [1.0, 1.0])
    out = tmp_path / "r.html"
    write_report([a, b], out, n_boot=100)
    html = Elements(out.read_text())
    assert [e[1]["data-id"] for e in html.all("div", "item")] == ["o0", "o1"]
    assert [e[1]["class"] for e in html.all("div", "ans")] == [
        "ans partly",
        "ans right",
        "ans right",
        "ans right",
    ]


def test_thumbnails_come_from_files_parquet_rows_zip_members_and_dicom(page):
    _, html = page
    images = [e for e in html.all("img") if "chart" not in e[1].get("class", "")]
    assert [e[1]["alt"] for e in images][:3] == ["c7", "c8", "c9"]  # a parquet row, a zip member, a DICOM
    assert len(images) == 10
    for _, attrs, _ in images:
        assert attrs["src"].startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(attrs["src"].split(",", 1)[1])))
        thumb.load()
        assert max(thumb.size) == THUMB_SIDE or max(thumb.size) <= 96  # shrunk to 160 px, never enlarged


def test_rows_without_an_image_say_why_instead_of_a_broken_picture(tmp_path):
    a = make_run(tmp_path / "old", A)  # rows written before predictions carried the image
    missing = make_run(tmp_path / "moved", A, images=[{"image": str(tmp_path / "gone.png")}] * 20)
    out = tmp_path / "r.html"
    write_report([a, missing], out, n_boot=100, gallery=4)
    html = Elements(out.read_text())
    notes = [" ".join(e[2]) for e in html.all("div", "noimg")]
    assert len(notes) == 4 and all("gone.png" in n and "not found" in n for n in notes)
    assert not [e for e in html.all("img") if "chart" not in e[1].get("class", "")]


def test_without_matplotlib_the_report_says_so_instead_of_figures(tmp_path, monkeypatch):
    from medvqa.reports import charts

    monkeypatch.setattr(charts, "_pyplot", lambda: None)
    out = tmp_path / "r.html"
    write_report([make_run(tmp_path / "a", A, [1.0]), make_run(tmp_path / "b", B, [0.5])], out, n_boot=100)
    html = Elements(out.read_text())
    assert html.all("img", "chart") == [] and [charts.NO_MATPLOTLIB] in [e[2] for e in html.all("p", "note")]
    assert len(html.all("th", "run-col")) == 2  # the tables do not need it


def test_the_reliability_diagram_is_drawn_from_the_closed_answers_confidences(tmp_path):
    import json
    import math

    from medvqa.reports import charts
    from medvqa.reports.runs import load_run

    run = make_run(tmp_path / "cal", A)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):  # confidence 0.5 .. 0.975 in the option the prediction names
        p = 0.5 + 0.025 * i
        other = "no" if row["prediction"] == "yes" else "yes"
        row["option_logprobs"] = {row["prediction"]: math.log(p), other: math.log(1 - p)}
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["calibration"] = {"fit": {"fitted": True, "temperature": 2.0}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    points = charts.reliability_points(load_run(run))
    assert set(points) == {"before", "after"} and sum(b["n"] for b in points["before"]) == 20
    first = points["before"][0]  # the two least confident answers, 0.5 and 0.525, both right (A's first two)
    assert first["n"] == 2 and first["confidence"] == pytest.approx(0.5125) and first["accuracy"] == 1.0
    assert points["before"][-1]["accuracy"] == 0.0  # the most confident answer (A's last) is wrong
    assert points["after"][-1]["confidence"] < points["before"][-1]["confidence"]  # T = 2 cools them
    out = tmp_path / "r.html"
    write_report([run], out, n_boot=100)
    html = Elements(out.read_text())
    assert [e for e in html.all("img", "chart") if e[1].get("alt") == "reliability diagram"]
