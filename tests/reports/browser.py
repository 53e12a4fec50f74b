"""Opening a report in headless Chromium (Debian's `chromium` + `chromium-driver`) through selenium."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install -y chromium chromium-driver && pip install -e '.[dev]' (selenium)"


def chromium_paths() -> tuple[str, str]:
    """(browser, driver) executables; AssertionError with the install line when either is missing, so a
    machine without Chromium fails the browser test instead of skipping it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    assert browser and driver, f"the browser test needs Chromium and its driver: {INSTALL}"
    return browser, driver


# headless, and quiet: without the background-networking flags Chromium keeps calling out, and this
# machine's closed network refuses every call (the app test checks the page fetches nothing from outside)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")  # fmt: skip


@contextmanager
def chromium(
    width: int = 1360, height: int = 1000, profile: Path | None = None, downloads: Path | None = None
):
    """A selenium driver of headless Chromium with the console log kept; a fresh `profile` folder, and
    downloads saved into `downloads` without asking, when given."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise AssertionError(f"the browser test needs selenium: {INSTALL}") from e
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        *FLAGS,
        f"--window-size={width},{height}",
        *([f"--user-data-dir={profile}"] if profile else []),
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    if downloads:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    try:
        yield driver
    finally:
        driver.quit()


def full_page_screenshot(driver, path: Path, width: int = 1360, max_height: int = 12000) -> Path:
    """The whole page (not only the first screen) as one PNG."""
    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.set_window_size(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
