"""voxrelay batch --ray on a local Ray cluster started here (three worker slots, each with its own
recognizer), with a worker killed mid-batch: no file lost, none written twice, the outputs of a local
batch, and a rerun that skips everything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.replicas import ROOT, check_once, free_port, segments_of

pytestmark = pytest.mark.slow

FILES = [
    "constructed/vad_bench_dev.wav",
    "asr/jfk_inaugural_1961.wav",
    "asr/librispeech_1272-141231-0002.wav",
    "asr/ljspeech_LJ050-0131.wav",
    "asr/picovoice_cheetah_test_en.wav",
    "long/vosk_example_test.wav",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    ray = shutil.which("ray")
    if ray is None:
        pytest.skip("the ray command is not installed")
    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    args = [ray, "start", "--head", "--block", "--num-cpus", "3", "--port", str(port)]
    args += ["--include-dashboard", "false", "--disable-usage-stats"]
    head = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert head.stdout is not None
    for line in head.stdout:
        if "block forever" in line:
            break
    else:
        raise AssertionError(f"ray start exited with {head.wait()}")
    yield f"127.0.0.1:{port}", head
    children = psutil.Process(head.pid).children(recursive=True)
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait(10)
    for child in children:  # what the head started and did not stop
        if child.is_running():
            child.kill()
    head.stdout.close()


def busy_workers(head: subprocess.Popen[str]) -> list[int]:
    """PIDs of the cluster's batch workers that are transcribing a file now."""
    import psutil

    found = []
    for child in psutil.Process(head.pid).children(recursive=True):
        try:
            title = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "ray::BatchWorker.transcribe" in title:
            found.append(child.pid)
    return found


def batch(inputs: list[Path], out: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "voxrelay", "batch", *map(str, inputs), "-o", str(out), "--format", "json"]
    args += ["--vad", "webrtc", *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ray_batch_survives_a_killed_worker(
    cluster: tuple[str, subprocess.Popen[str]], speech_dir: Path, tmp_path: Path
) -> None:
    address, head = cluster
    inputs = [speech_dir / name for name in FILES]
    local = batch(inputs, tmp_path / "local", "--jobs", "3")
    _, err = local.communicate(timeout=600)
    assert local.returncode == 0, err

    out = tmp_path / "ray"
    proc = batch(inputs, out, "--ray", address, "--ray-workers", "3")
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        summary = out / "summary.json"
        ok = summary.exists() and any(f["status"] == "ok" for f in json.loads(summary.read_text())["files"])
        busy = busy_workers(head)
        if ok and busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    _, err = proc.communicate(timeout=600)
    assert killed is not None, f"no worker was busy after the first file: nothing was killed\n{err}"
    assert proc.returncode == 0, err
    assert err.count("the worker died") == 1, err  # one file handed out again, once
    summary = json.loads((out / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["ok"] * len(inputs)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{p.stem}.json" for p in inputs] + ["summary.json"])
    for path in inputs:
        expected = segments_of(tmp_path / "local" / f"{path.stem}.json")
        check_once(segments_of(out / f"{path.stem}.json"), expected, path.name)

    again = batch(inputs, out, "--ray", address)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert [f["status"] for f in json.loads((out / "summary.json").read_text())["files"]] == ["skipped"] * len(inputs)


def test_ray_batch_records_truncated_files_reads_mp3_and_counts_files_left_out(
    cluster: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    from tests.test_compressed_inputs import SAMPLE, encode

    folder = tmp_path / "in"
    encode(folder / "talk.mp3")
    (folder / "cut.wav").write_bytes(SAMPLE.read_bytes()[:290000])
    (folder / "notes.txt").write_text("not audio\n")
    out = tmp_path / "out"
    proc = batch([folder], out, "--ray", cluster[0], "--ray-workers", "1")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "mpg123" not in err, err
    summary = json.loads((out / "summary.json").read_text())
    records = {Path(f["input"]).name: f for f in summary["files"]}
    assert records["cut.wav"]["truncated"] is True and records["cut.wav"]["missing_seconds"] > 1
    assert records["talk.mp3"]["status"] == "ok" and "truncated" not in records["talk.mp3"]
    assert "quick brown fox" in json.loads((out / "talk.json").read_text())["text"].lower()
    assert summary["skipped_by_extension"] == {"count": 1, "extensions": {".txt": 1}}
