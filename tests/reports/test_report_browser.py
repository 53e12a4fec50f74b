"""The HTML report in a real browser (headless Chromium): every image loads, one column per run, no console
errors; a full-page screenshot is kept at test-artifacts/report.png (and in the test's tmp dir).

Never skipped: without Chromium the test fails with the install line (tests/reports/browser.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from browser import chromium, full_page_screenshot
from conftest import make_run

from medvqa.reports import write_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored
A = [1] * 12 + [0] * 8
B = [1] * 7 + [0] * 5 + [1] + [0] * 7
C = [1] * 16 + [0] * 4


def test_report_opens_in_chromium_with_every_image_loaded(tmp_path, image_fields):
    pictures = image_fields(30)
    opens = [1.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0]
    runs = [make_run(tmp_path / "fp32", A, opens, images=pictures),
            make_run(tmp_path / "fp16", B, opens[::-1], precision="16-mixed", images=pictures),
            make_run(tmp_path / "bf16", C, opens, precision="bf16-mixed", images=pictures)]  # fmt: skip
    out = tmp_path / "report.html"
    write_report(runs, out, n_boot=300)
    with chromium() as driver:
        driver.get(out.as_uri())
        driver.execute_script("return document.readyState")
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        columns = driver.execute_script(
            "return document.querySelectorAll('table.metrics thead th.run-col').length"
        )
        logs = driver.get_log("browser")
        shot = full_page_screenshot(driver, tmp_path / "report.png")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    # 6 charts (metrics, 4 groupings: source has one category and no section, curves) + 30 thumbnails:
    # every gallery item has its picture
    assert len(images) == 6 + 30
    assert [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)] == []
    assert columns == 3
    assert [entry for entry in logs if entry["level"] in ("SEVERE", "WARNING")] == []
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
