"""The review page in real headless Chromium against a real `voxrelay serve`: sign in, open a queued
segment, hear it, correct its text with the keyboard, and find the correction stored and the live WER
moved; a screenshot is kept for a person to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.rollout_helpers import ADMIN_TOKEN, session, utterances

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver"),
]


def start_serve(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    (tmp_path / "admin.txt").write_text(f"{ADMIN_TOKEN} rita\n")
    (tmp_path / "deployments.yaml").write_text("deployments:\n  tiny: {model: tiny.en, automation: assistance}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxrelay",
            "serve",
            "--port",
            "0",
            "--deployments",
            str(tmp_path / "deployments.yaml"),
            "--admin-token-file",
            str(tmp_path / "admin.txt"),
            "--data-dir",
            str(tmp_path / "data"),
            "--review-port",
            "0",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 - lives as long as the process
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    while not {"listening", "review", "metrics"} <= set(lines):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError("serve exited: " + (tmp_path / "serve.log").read_text()[-2000:])
        lines[line.split(" ", 1)[0]] = line.strip().rsplit(" ", 1)[-1]
    return proc, lines


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER or ""))


def keep(driver: Any, tmp_path: Path, name: str) -> None:
    """A screenshot in the test's folder (and in $VOXRELAY_SCREENSHOTS, to look at)."""
    driver.save_screenshot(str(tmp_path / name))
    folder = os.environ.get("VOXRELAY_SCREENSHOTS")
    if folder:
        shutil.copy(tmp_path / name, Path(folder) / name)


def metric(url: str, name: str, labels: str) -> float | None:
    with urllib.request.urlopen(url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(f"{name}{{") and labels in line:
                return float(line.rsplit(" ", 1)[-1])
    return None


def test_a_reviewer_corrects_a_segment_in_the_browser(
    tmp_path: Path, speech_dir: Path, english_utterances: list[dict[str, Any]]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    proc, lines = start_serve(tmp_path)
    driver = None
    try:
        address = lines["listening"]
        results = session(address, "dev-page", utterances(speech_dir, english_utterances, 2))
        assert all(r.needs_review for r in results)
        page = lines["review"]
        driver = browser(tmp_path / "chromium")
        wait = WebDriverWait(driver, 60)

        # Signing in with a wrong token is refused on the page, in words.
        driver.get(page)
        wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
        driver.find_element(By.ID, "token").send_keys("not-a-token-of-this-server", Keys.ENTER)
        wait.until(lambda d: "not accepted" in d.find_element(By.ID, "login-error").text)
        wait.until(lambda d: d.find_element(By.ID, "token").get_attribute("value") == "")
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN, Keys.ENTER)

        wait.until(lambda d: d.find_element(By.ID, "item").is_displayed())
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue li")) == 2)
        # The page opens the oldest item first (the two were queued within milliseconds, in either order).
        current = driver.find_element(By.CSS_SELECTOR, "#queue li.current").get_attribute("data-id")
        first, second = sorted(results, key=lambda r: r.review_id != current)
        box = driver.find_element(By.ID, "text")
        assert box.get_attribute("value") == first.text
        assert "reviewing as rita" in driver.find_element(By.ID, "who").text
        # The segment's audio is loaded and playable (its duration is the segment's).
        wait.until(lambda d: d.execute_script("return document.getElementById('audio').readyState") >= 1)
        duration = driver.execute_script("return document.getElementById('audio').duration")
        assert duration == pytest.approx(first.timings.audio_seconds, abs=0.05)
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, Keys.SPACE)  # play / pause works
        driver.find_element(By.CSS_SELECTOR, "#queue li.current")

        corrected = "this is what the speaker really said"
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(corrected)
        wait.until(lambda d: "changed from the model's text" in d.find_element(By.ID, "edit-state").text)
        assert driver.find_element(By.ID, "revert").is_enabled()
        assert driver.find_element(By.ID, "accept").text.startswith("Save correction")
        keep(driver, tmp_path, "review-page.png")
        box.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda d: "Correction saved" in d.find_element(By.ID, "message").text)
        # The next segment is open; the queue has one left.
        wait.until(lambda d: d.find_element(By.ID, "text").get_attribute("value") == second.text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue li")) == 1)
        assert not driver.find_element(By.ID, "revert").is_enabled()  # nothing typed yet: nothing to undo

        # The correction is stored with the segment (seen through the Admin service) and moved the WER.
        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "voxrelay",
                "review",
                "list",
                "--status",
                "corrected",
                "--server",
                address,
                "--admin-token-file",
                str(tmp_path / "admin.txt"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        assert first.review_id in listed.stdout and corrected in listed.stdout
        metrics = lines["metrics"]
        deadline = time.monotonic() + 10
        wer = None
        while wer is None and time.monotonic() < deadline:
            wer = metric(metrics, "voxrelay_review_wer", 'deployment="tiny"')
        assert wer is not None and wer > 0.5
        driver.execute_script("window.scrollTo(0, 0)")
        wait.until(lambda d: "1 reviewed" in d.find_element(By.ID, "summary").text)
        keep(driver, tmp_path, "review-page-after.png")

        # Alt+S skips: the item stays pending, behind the others.
        driver.find_element(By.ID, "text").send_keys(Keys.ALT, "s")
        wait.until(lambda d: "Skipped" in d.find_element(By.ID, "message").text)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(30)
