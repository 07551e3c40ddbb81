"""The built-in live page in real headless Chromium, during real traffic to a real `voxrelay serve`:
the charts update, an alarm caused by the traffic (segments of silence: empty transcripts) shows as
firing with its threshold and what to do, the drift table and the deployments are there, and a
screenshot is saved."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT, load_pcm16

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver"),
]


def start_serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 - lives as long as the process
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    wanted = {"listening", "dashboard"} | ({"metrics"} if "--metrics-port" in extra else set())
    while not wanted <= set(lines):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError("serve exited: " + (tmp_path / "serve.log").read_text()[-2000:])
        word = line.split(" ", 1)[0]
        lines[word] = line.strip().rsplit(" ", 1)[-1]
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
        f"--user-data-dir={profile}",
        "--window-size=1500,3800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER or ""))


def recognize(address: str, audio: np.ndarray) -> str:
    import grpc

    from voxrelay.protos import pb, pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        request = pb.RecognizeRequest(audio=np.ascontiguousarray(audio, dtype="<i2").tobytes())
        return stub.Recognize(request, timeout=120).text


def test_live_page_shows_traffic_an_alarm_and_drift(
    tmp_path: Path, english_utterances: list[dict[str, Any]], speech_dir: Path
) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(
        "drift:\n  learn_segments: 20\n  short_window: 8\n  long_window: 40\n  min_segments: 4\n"
        "  score_interval_seconds: 1\nalerts:\n  empty_transcript_ratio:\n    threshold: 0.2\n    for: 0s\n"
    )
    proc, lines = start_serve(tmp_path, "--dashboard-port", "0", "--thresholds", str(thresholds))
    address = lines["listening"]
    page_url = lines["dashboard"]
    utterances = [load_pcm16(speech_dir / row["audio"]) for row in english_utterances[:8]]
    stop = threading.Event()
    silence = threading.Event()
    errors: list[BaseException] = []

    def traffic() -> None:
        rng = np.random.default_rng(1)
        try:
            i = 0
            while not stop.is_set():
                if silence.is_set():
                    audio = (rng.standard_normal(16000) * 3).astype(np.int16)  # -80 dBFS: nothing to hear
                else:
                    audio = utterances[i % len(utterances)]
                recognize(address, audio)
                i += 1
        except BaseException as err:
            errors.append(err)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    driver = None
    try:
        driver = browser(Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)))
        driver.get(page_url)

        def wait_for(check: Any, what: str, timeout: float = 120.0) -> Any:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                value = check()
                if value:
                    return value
                time.sleep(0.5)
            raise AssertionError(f"timed out waiting for {what}; page status: {status()}")

        def status() -> str:
            return str(driver.execute_script("return document.getElementById('status').textContent"))

        def updates(chart: str) -> int:
            return int(driver.execute_script(f"return Number(document.getElementById('{chart}').dataset.updates||0)"))

        # The charts draw and keep updating while the traffic flows.
        first = wait_for(lambda: updates("c-throughput"), "the throughput chart to draw")
        wait_for(lambda: updates("c-throughput") >= first + 3, "the throughput chart to update")
        wait_for(lambda: updates("c-latency") and updates("c-rtf"), "the latency and RTF charts")
        assert driver.execute_script("return document.querySelectorAll('#c-throughput canvas').length") >= 1
        # With the pointer elsewhere, a legend shows the latest values, not dashes.
        legend = driver.execute_script(
            "return [...document.querySelectorAll('#c-throughput .u-series .u-value')].map(e => e.textContent)"
        )
        assert any(v not in ("", "–", "--") for v in legend[1:]), legend
        # The alarms on the edges' metrics are one line, not a row each.
        (remote,) = driver.find_elements("css selector", '#alarms tr[data-state="prometheus"]')
        assert "e2e_latency_p95" in remote.text and "spool_drops" in remote.text
        # The reference is learned from the first 20 segments, then the drift table holds scores.
        wait_for(
            lambda: "learned from the first 20 segments" in driver.find_element("id", "drift").text,
            "the reference to be learned",
        )
        deployments = driver.find_element("id", "deployments").text
        assert "tiny.en" in deployments and "stable" in deployments
        # An alarm the traffic causes: silence gets empty transcripts.
        silence.set()
        row = wait_for(
            lambda: driver.find_elements(
                "css selector", '#alarms tr[data-key="empty_transcript_ratio"][data-state="firing"]'
            ),
            "the empty-transcript alarm to fire",
        )[0]
        assert "20.0 %" in row.text and "VAD too sensitive" in row.text.replace("\n", " ")
        first_row = driver.find_element("css selector", "#alarms tbody tr")
        assert first_row.get_attribute("data-state") == "firing"
        time.sleep(2.5)  # one more refresh, so the screenshot shows the charts after the silence began
        shot = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("VOXRELAY_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / "dashboard.png")
        assert not errors, errors
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(30)
        sender.join(60)
