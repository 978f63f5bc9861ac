"""The report in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`) via selenium.

Opens the file, checks there are no console errors and no network requests, that every plot renders
as a non-empty SVG, that an experience row expands to its op history (and a rollout inside it to its
full text), and saves full-page screenshots to tests/report/artifacts/ (gitignored).
`make test` installs the browser (`make browser`); where it cannot, this test skips and says why,
unless TFGRPO_REQUIRE_BROWSER=1 (set it in CI) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.report.test_report import HOSTILE, filled_store
from tfgrpo.report.build import PLOT_NAMES, write_report

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900")


def _find(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n) or (n if Path(n).is_file() else None))), None)


def _unavailable(reason: str) -> None:
    if os.environ.get("TFGRPO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (TFGRPO_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed: pip install -e '.[dev]'")
    chromium = _find("chromium", "chromium-browser", "/usr/bin/chromium")
    chromedriver = _find("chromedriver", "/usr/bin/chromedriver")
    if not chromium or not chromedriver:
        _unavailable("headless Chromium not found: `make browser` (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="tfgrpo-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(driver, tmp_path_factory):
    """The report of a scripted run, loaded in the browser; returns (driver, report path)."""
    db, _ = filled_store(tmp_path_factory)
    out = write_report(db, "lib", tmp_path_factory.mktemp("report-browser") / "report.html").path
    driver.get("about:blank")
    for kind in ("browser", "performance"):  # drop what the browser's own start-up pages logged
        driver.get_log(kind)
    driver.get(out.as_uri())
    return driver, out


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height, 900), 12000))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path


def test_no_console_errors_and_no_network(page):
    driver, out = page
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert urls == [out.as_uri()], urls  # the file itself and nothing else
    assert driver.execute_script("return window.__pwned === undefined")  # escaped text never ran
    assert HOSTILE in driver.find_element("css selector", "body").text  # ...and reads as plain text


def test_plots_render_as_non_empty_svg(page):
    driver, _ = page
    for name in PLOT_NAMES:
        box, shapes = driver.execute_script(
            "const s = document.querySelector(arguments[0]); if (!s) return [null, 0];"
            "const r = s.getBoundingClientRect(); return [[r.width, r.height], s.querySelectorAll('path, use').length];",
            f"#plot-{name} svg")
        assert box and box[0] > 200 and box[1] > 80 and shapes > 5, (name, box, shapes)


def test_experience_row_expands_to_its_history(page):
    driver, _ = page
    row = driver.find_element("css selector", "#experiences details.exp")
    body = row.find_element("css selector", ".exp-body")
    assert not body.is_displayed()
    _screenshot(driver, "report.png")
    row.find_element("css selector", "summary").click()
    assert row.get_attribute("open") is not None and body.is_displayed()
    ops = body.find_elements("css selector", "ol.ops > li.op")
    assert ops and "Learner's reason" in body.text and "Question arith-train-" in body.text
    rollout = body.find_element("css selector", "details.rollout")
    full = rollout.find_element("css selector", "pre")
    assert not full.is_displayed()
    rollout.find_element("css selector", "summary").click()
    assert full.is_displayed() and "boxed" in full.text
    shot = _screenshot(driver, "report-expanded.png")
    assert shot.stat().st_size > 10_000
