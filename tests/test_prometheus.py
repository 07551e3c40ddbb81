"""A real Prometheus (Debian's) on a loopback port scrapes a real `voxrelay serve` and an edge's
`--metrics-port` with the rendered alert rules. Real speech teaches the recognizer its reference (and
is the edge's own reference, made by `voxrelay profile --edge`); the same speech at −30 dB then fires
VoxrelayInputDrift for level_dbfs and VoxrelayEdgeInputDrift for the edge's level while every other
alert stays quiet; meanwhile every panel query of the Grafana dashboard returns data. Prometheus, the
server and the edge are stopped by their PIDs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.conftest import ROOT, load_pcm16
from tests.test_dashboard import start_serve
from voxrelay.cli import main
from voxrelay.monitoring.alerts import write_rules
from voxrelay.monitoring.grafana import dashboard, queries
from voxrelay.monitoring.thresholds import load_thresholds

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus")]

THRESHOLDS = """
drift:
  learn_segments: 20
  short_window: 10
  long_window: 40
  min_segments: 6
  score_interval_seconds: 1
  p_value: 0.001
alerts:
  input_drift: {for: 0s}
  output_drift: {for: 0s}
  edge_input_drift: {for: 0s}
  error_ratio: {for: 0s}
  empty_transcript_ratio: {for: 0s}
  real_time_factor: {for: 0s}
  resource_exhausted_rate: {for: 0s}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def speech_file(path: Path, utterances: list[np.ndarray], gain_db: float, repeats: int) -> Path:
    rng = np.random.default_rng(5)
    pieces = []
    for _ in range(repeats):
        for u in utterances:
            pieces.append((u * 10 ** (gain_db / 20)).astype(np.int16))
            pieces.append((rng.standard_normal(24000) * 30 * 10 ** (gain_db / 20)).astype(np.int16))
    soundfile.write(str(path), np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


def edge(wav: Path, server: str, port: int, pace: float, *drift: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxrelay",
            "-q",
            "transcribe",
            str(wav),
            "--server",
            server,
            "--vad",
            "silero",
            "--pace",
            str(pace),
            "--metrics-port",
            str(port),
            "--device-id",
            "test-edge",
            *drift,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        text=True,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_real_prometheus_fires_the_matching_alert_and_every_dashboard_query_has_data(
    tmp_path: Path, english_utterances: list[dict[str, Any]], speech_dir: Path
) -> None:
    thresholds_path = tmp_path / "thresholds.yaml"
    thresholds_path.write_text(THRESHOLDS)
    write_rules(load_thresholds(thresholds_path), tmp_path / "rules.yml")
    utterances = [load_pcm16(speech_dir / row["audio"]) for row in english_utterances if row["duration_s"] < 12]
    (tmp_path / "known-good").mkdir()
    clean = speech_file(tmp_path / "known-good" / "clean.wav", utterances, 0.0, 2)
    quiet = speech_file(tmp_path / "quiet.wav", utterances, -30.0, 2)
    edge_profile = tmp_path / "edge-profile.json"
    assert main(["-q", "profile", "--edge", str(clean.parent), "-o", str(edge_profile), "--vad", "silero"]) == 0
    drift_options = ("--drift-profile", str(edge_profile), "--thresholds", str(thresholds_path))

    server, lines = start_serve(
        tmp_path, "--metrics-port", "0", "--thresholds", str(thresholds_path), "--dashboard-port", "0"
    )
    procs: list[subprocess.Popen[Any]] = [server]
    try:
        address = lines["listening"]
        metrics_target = lines["metrics"].removeprefix("http://").removesuffix("/metrics")
        edge_port = free_port()
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            f"  - job_name: voxrelay-recognizer\n    static_configs: [{{targets: ['{metrics_target}']}}]\n"
            f"  - job_name: voxrelay-edge\n    static_configs: [{{targets: ['127.0.0.1:{edge_port}']}}]\n"
        )
        prometheus = subprocess.Popen(
            [
                PROMETHEUS or "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115 - lives as long as the process
            cwd=tmp_path,
        )
        procs.append(prometheus)
        base = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                api(base, "status/buildinfo")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
                time.sleep(0.5)

        # Real speech: the recognizer learns its reference from the first 20 segments.
        first = edge(clean, address, edge_port, 8.0, *drift_options)
        procs.append(first)
        from tests.test_dashboard import recognize

        with pytest.raises(Exception, match="audio: empty"):
            recognize(address, np.zeros(0, dtype=np.int16))  # one refused request, for the panel by code
        assert first.wait(300) == 0

        # The same speech 30 dB quieter, while Prometheus watches.
        second = edge(quiet, address, edge_port, 3.0, *drift_options)
        procs.append(second)

        def firing() -> list[dict[str, Any]]:
            return [a for a in api(base, "alerts")["alerts"] if a["state"] == "firing"]

        def matching(alerts: list[dict[str, Any]], name: str, features: set[str]) -> list[dict[str, Any]]:
            return [a for a in alerts if a["labels"]["alertname"] == name and a["labels"]["feature"] in features]

        deadline = time.monotonic() + 180
        drift: list[dict[str, Any]] = []
        edge_drift: list[dict[str, Any]] = []
        while not (drift and edge_drift):
            assert time.monotonic() < deadline, f"no VoxrelayInputDrift and VoxrelayEdgeInputDrift; firing: {firing()}"
            assert second.poll() is None, "the quiet run ended before the alerts fired"
            now = firing()
            drift = drift or matching(now, "VoxrelayInputDrift", {"level_dbfs"})
            edge_drift = edge_drift or matching(now, "VoxrelayEdgeInputDrift", {"level_dbfs", "stream_level_dbfs"})
            time.sleep(1)
        alert = drift[0]
        assert alert["labels"]["model"] == "tiny.en" and alert["labels"]["severity"] == "ticket"
        assert "make a new reference profile" in alert["annotations"]["action"]
        assert edge_drift[0]["labels"]["job"] == "voxrelay-edge"
        assert "voxrelay profile --edge" in edge_drift[0]["annotations"]["action"]
        others = sorted({a["labels"]["alertname"] for a in firing()} - {"VoxrelayInputDrift", "VoxrelayEdgeInputDrift"})
        assert not others, f"alerts that should be quiet fire: {others}"

        # Every panel of the Grafana dashboard has data, edge panels included (the edge is running).
        time.sleep(3)
        empty = []
        for title, expr in queries(rate_interval="30s"):
            result = api(base, "query", query=expr)["result"]
            if not result:
                empty.append(f"{title}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert len(queries()) == sum(len(p.get("targets", [])) for p in dashboard()["panels"])
    finally:
        for proc in reversed(procs):
            stop(proc)
