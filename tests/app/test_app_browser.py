"""The app in a real browser (headless Debian Chromium through selenium): upload an image, ask an in-scope
question (an answer appears), ask "Do I have cancer?" (the referral appears), upload a corrupt file (a message
appears), download the summary (it lists both questions). Screenshots of each step: test-artifacts/app-*.png.

Never skipped: without Chromium the test fails with the install line (tests/reports/browser.py)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from medvqa.guard.patterns import REFERRALS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reports"))
from browser import chromium  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # git-ignored
WAIT = 120  # s: one answer of the tiny model on a loaded machine is well under this


def wait_for(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.5).until(lambda d: condition(d))
    except Exception as e:
        shot(driver, "failure")
        raise AssertionError(f"timed out waiting for {what}") from e


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(
        f"const e = document.getElementById('{element_id}'); return e ? e.innerText : ''"
    )


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"app-{name}.png"))


def upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
    field.send_keys(str(path))


def ask(driver, question: str, expect: str) -> str:
    """Type and send `question`; the chat's text once `expect` (a text the answer must contain) is in it."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, "#question textarea")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "ask").click()
    wait_for(driver, lambda d: expect in text_of(d, "chat"), f"{expect!r} in the answer to {question!r}")
    return text_of(driver, "chat")


def test_app_in_chromium(app_server, scan_png, corrupt_png, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(1360, 1100, profile=tmp_path / "profile", downloads=downloads) as driver:
        driver.get(app_server["url"])
        wait_for(driver, lambda d: d.execute_script("return !!document.querySelector('#upload input[type=file]')"),
                 "the upload field")  # fmt: skip
        shot(driver, "1-start")
        upload(driver, scan_png)
        wait_for(driver, lambda d: "Image loaded" in text_of(d, "status"), "the image to load")
        assert driver.execute_script("return document.querySelector('#picture img').naturalWidth") > 0
        chat = ask(
            driver, "Which organ is shown?", "[Answered"
        )  # open: a closed answer may have no confidence
        shot(driver, "2-answer")
        assert "Answer:" in chat and "not a diagnosis" in chat, chat
        chat = ask(driver, "Do I have cancer?", "[Referred to your doctor")
        shot(driver, "3-referral")
        assert REFERRALS["cancer"] in chat, chat
        upload(driver, corrupt_png)
        wait_for(driver, lambda d: "could not be opened" in text_of(d, "status"), "the corrupt-file message")
        shot(driver, "4-corrupt")
        assert "Traceback" not in driver.page_source
        # nothing was fetched from outside this machine (no web fonts, no analytics, no CDN)
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        outside = [u for u in resources if not u.startswith((app_server["url"], "data:", "blob:"))]
        assert resources and outside == []
        driver.find_element("id", "summary-link").click()
        wait_for(driver, lambda d: list(downloads.glob("*.html")), "the summary download")
        time.sleep(0.5)  # the download is renamed from .crdownload when complete
        page = next(downloads.glob("*.html"))
        summary = page.read_text(encoding="utf-8")
        shutil.copy(page, tmp_path / "summary.html")
        driver.get(page.as_uri())
        shot(driver, "5-summary")
    assert "Which organ is shown?" in summary and "Do I have cancer?" in summary
    assert "referred to your doctor" in summary and "not a diagnosis" in summary
    assert "data:image/png;base64," in summary
